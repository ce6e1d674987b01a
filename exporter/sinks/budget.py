"""The series budget: which catalog families the sinks export, and whether per served entity.

At about 62 series per endpoint (most of them histogram buckets, targets and breach flags,
and a copy of each figure per served entity), a workspace of 1,000 endpoints is 60,000+
series. Large fleets leave out the heavy families here; docs/metrics.md says what each costs.
Both sinks (Prometheus, Datadog) obey the same budget, so the two views stay alike.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from ..catalog import BY_NAME, Family
from ..model import EndpointReport, SeriesReport
from ..strict import Strict


class SeriesBudget(Strict):
    """What the sinks leave out (the `series:` section)."""

    exclude_families: list[str] = Field(
        default_factory=list,
        description="catalog families to leave out, without the model_serving_ prefix, e.g. request_duration_seconds, "
                    "target_breached; the exporter's own exporter_* families always stay")
    served_entities: bool = Field(True, description="export each served entity's figures too, not only the endpoint's "
                                                    "(their configuration, served_entity_info and configured_concurrency, stays)")

    @field_validator("exclude_families")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in BY_NAME]
        if unknown:
            raise ValueError(f"unknown families {unknown}; known: {', '.join(sorted(BY_NAME))}")
        own = [n for n in names if n.startswith("exporter_")]
        if own:
            raise ValueError(f"the exporter's own families cannot be left out (its health depends on them): {own}")
        return names

    def keeps(self, family: Family) -> bool:
        return family.name not in self.exclude_families

    def rows(self, report: EndpointReport) -> tuple[SeriesReport, ...]:
        """The series rows exported for an endpoint: the endpoint as a whole, then each entity if kept."""
        return (report.endpoint, *report.entities) if self.served_entities else (report.endpoint,)
