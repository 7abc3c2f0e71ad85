"""The admin dashboard (/ui): server-rendered Jinja2 pages over the same library calls as the CLI and the
API; one small CSS file, no JavaScript build, nothing fetched from the internet."""
