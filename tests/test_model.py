"""The model's records: `@record` builds the same classes as `@dataclass(frozen=True)`, with a faster __init__."""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

from exporter import model
from exporter.model import EndpointInfo, Figures, Histogram, MinuteFigures, record

RECORDS = [cls for cls in vars(model).values()
           if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == model.__name__]


def plain_twin(cls: type) -> type:
    """The class as `@dataclass(frozen=True)` alone would build it, from the same fields."""
    specs = [(f.name, f.type, dataclasses.field(default=f.default, default_factory=f.default_factory))
             for f in dataclasses.fields(cls)]
    return dataclasses.make_dataclass(cls.__name__, specs, frozen=True)


def test_every_model_class_is_a_record():
    assert len(RECORDS) >= 15
    assert all(cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__" for cls in RECORDS)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_a_record_takes_the_parameters_and_defaults_of_its_dataclass(cls):
    ours = inspect.signature(cls).parameters
    theirs = inspect.signature(plain_twin(cls)).parameters
    assert list(ours) == list(theirs)
    for name, param in theirs.items():
        if param.default is inspect.Parameter.empty:
            assert ours[name].default is inspect.Parameter.empty
        elif "factory" not in repr(param.default):  # dataclasses shows a default factory as <factory>
            assert ours[name].default == param.default


def test_records_are_frozen_equal_hashable_and_picklable():
    a, b = MinuteFigures(requests=3.0, cpu_ratio=0.5), MinuteFigures(requests=3.0, cpu_ratio=0.5)
    assert a == b and hash(a) == hash(b) and a != MinuteFigures(requests=4.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.requests = 1.0  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(a)) == a
    assert dataclasses.replace(Figures(qps=1.0), qps=2.0) == Figures(qps=2.0)
    assert repr(Figures(qps=1.0)).startswith("Figures(minutes=0, latest_minute_ms=None, qps=1.0")


def test_default_factories_give_each_instance_its_own_value_and_post_init_runs():
    first, second = EndpointInfo("a"), EndpointInfo("b")
    assert first.tags == {} and first.tags is not second.tags
    assert EndpointInfo("c", tags={"k": "v"}).tags == {"k": "v"}
    with pytest.raises(ValueError, match="differ in length"):
        Histogram((1.0, float("inf")), (1.0,), 0.0, 1.0)


def test_keyword_and_positional_arguments_work_as_for_a_dataclass():
    @record
    class Point:
        x: float
        y: float = 0.0

    assert Point(1.0) == Point(x=1.0, y=0.0) and Point(1.0, 2.0).y == 2.0
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1.0, z=3.0)  # type: ignore[call-arg]


def test_minutes_share_one_set_of_reported_fields():
    a, b = MinuteFigures(requests=1.0, cpu_ratio=0.2), MinuteFigures(requests=5.0, cpu_ratio=0.9)
    assert a.reported == {"requests", "cpu_ratio"} and a.reported is b.reported
    assert MinuteFigures().reported == frozenset()
