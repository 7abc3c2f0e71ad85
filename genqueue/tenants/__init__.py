"""Who owns what: tenancy rules (principals, access checks) and tenants' retry credits."""
