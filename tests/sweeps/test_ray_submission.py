"""The Ray backend submits a large sweep lazily: never more than `max_in_flight` tasks at once,
the next as each ends; an interrupt leaves the unsubmitted cells to do. Checked against a
stand-in for the `ray` module that runs tasks when they are waited for."""

from __future__ import annotations

import sys
import types

import pytest

from fsmrun.sweeps.executors import CellOutcome, CellTask, RayExecutor


class FakeRay(types.ModuleType):
    """Enough of `ray` for RayExecutor: remote tasks run (in order) when waited for."""

    def __init__(self, cpus: int, interrupt_after: int | None = None) -> None:
        super().__init__("ray")
        self.cpus, self.interrupt_after = cpus, interrupt_after
        self.in_flight: list[int] = []  # task indices submitted and not yet collected
        self.most_in_flight = self.submitted = self.waits = 0
        self.cancelled: list[int] = []

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": float(self.cpus)}

    def remote(self, **options):
        def wrap(function):
            def submit(task: CellTask) -> int:
                self.submitted += 1
                self.in_flight.append(task.index)
                self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
                return task.index

            return types.SimpleNamespace(remote=submit)

        return wrap

    def wait(self, refs, num_returns: int):
        self.waits += 1
        if self.interrupt_after is not None and self.waits > self.interrupt_after:
            self.interrupt_after = None
            raise KeyboardInterrupt
        return [refs[0]], refs[1:]

    def get(self, ref: int) -> CellOutcome:
        self.in_flight.remove(ref)
        if ref in self.cancelled:
            raise type("TaskCancelledError", (Exception,), {})("cancelled")
        return CellOutcome(ref, "completed")

    def cancel(self, ref: int) -> None:
        self.cancelled.append(ref)


def tasks(n: int):
    """A generator: the executor must not need the whole list."""
    return (CellTask(index=i, config_json="{}", results_root="/nowhere") for i in range(n))


@pytest.fixture
def fake_ray(monkeypatch):
    def install(cpus: int, interrupt_after: int | None = None) -> FakeRay:
        ray = FakeRay(cpus, interrupt_after)
        monkeypatch.setitem(sys.modules, "ray", ray)
        return ray

    return install


def test_tasks_are_submitted_as_others_end_with_a_bounded_number_in_flight(fake_ray):
    ray = fake_ray(cpus=4)
    outcomes: list[CellOutcome] = []
    RayExecutor(cpus_per_task=2, max_in_flight=3).run(tasks(21_600), outcomes.append)
    assert ray.submitted == 21_600 and ray.most_in_flight == 3
    assert [o.index for o in outcomes] == list(range(21_600))


def test_the_default_bound_is_twice_what_the_cluster_runs_at_once(fake_ray):
    ray = fake_ray(cpus=8)
    RayExecutor(cpus_per_task=2).run(tasks(100), lambda outcome: None)
    assert ray.most_in_flight == 2 * 8 // 2


def test_an_interrupt_cancels_the_tasks_in_flight_and_submits_no_more(fake_ray):
    ray = fake_ray(cpus=2, interrupt_after=5)
    outcomes: list[CellOutcome] = []
    with pytest.raises(KeyboardInterrupt):
        RayExecutor(max_in_flight=4).run(tasks(1000), outcomes.append)
    assert [o.status for o in outcomes] == ["completed"] * 5 + ["interrupted"] * 4
    assert ray.submitted == 9 and ray.cancelled == [5, 6, 7, 8]
