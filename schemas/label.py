"""API contracts of message labels."""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = ["LabelBatchCreate", "LabelBatchResult", "LabelPublic", "LabelRejected", "LabelRename"]

# Raw names are only bounded here; the label rules run in `domain.labels`, so that a batch
# can report each rejected name instead of failing whole.
RawLabel = Annotated[str, Field(max_length=1000)]


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelBatchCreate(_Contract):
    names: list[RawLabel] = Field(min_length=1, max_length=100)


class LabelRename(_Contract):
    name: RawLabel


class LabelPublic(_Contract):
    id: str
    name: str
    created_at: AwareDatetime


class LabelRejected(_Contract):
    name: str
    reason: str


class LabelBatchResult(_Contract):
    """Created labels and, for each name that was not created, the reason."""

    created: list[LabelPublic]
    rejected: list[LabelRejected]
