"""The bench's "bare endpoint": the same framework and server as genqueue's API, touching no Redis."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/bare")
def bare() -> dict:
    return {"data": {"id": "x", "status": "finished"}}
