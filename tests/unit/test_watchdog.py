"""The watchdog: a stalled engine marks its worker stalled (kept long enough to be named), then the
process exits with its own status."""

from workers.watchdog import STALL_EXIT_CODE, STALLED_TTL, Watchdog


class Engine:
    def __init__(self, stuck: bool) -> None:
        self.stuck = stuck
        self.asked = []

    def stalled(self, timeout: float) -> bool:
        self.asked.append(timeout)
        return self.stuck


class Beats:
    ttl = 6.0

    def __init__(self) -> None:
        self.stalled = []
        self.beats = []

    def beat(self, ttl=None):
        self.beats.append((list(self.stalled), ttl))


def test_a_healthy_worker_is_left_alone():
    exits, beats = [], Beats()
    engines = {"a": Engine(False), "b": Engine(False)}
    Watchdog(engines, 120.0, beats, exits.append).check()
    assert exits == [] and beats.beats == [] and engines["a"].asked == [120.0]


def test_a_stalled_engine_is_announced_then_the_worker_exits():
    exits, beats = [], Beats()
    engines = {"a": Engine(False), "b": Engine(True), "b-alias": Engine(True)}
    Watchdog(engines, 5.0, beats, exits.append).check()
    assert beats.beats == [(["b", "b-alias"], STALLED_TTL)]
    assert exits == [STALL_EXIT_CODE] and STALL_EXIT_CODE != 0
