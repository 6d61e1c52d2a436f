"""The baseline: a bare FastAPI endpoint, served exactly like the platform (uvicorn, one worker)."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"message": "bonjour"}
