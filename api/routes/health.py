"""Liveness of the API process."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


@router.get("/health", response_model=Health)
async def read_health() -> Health:
    """Answer 200 while the process serves requests."""
    return Health(status="ok")
