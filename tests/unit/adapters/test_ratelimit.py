from eventpipeline.adapters.ratelimit import RateLimiter


class FakeTime:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_burst_of_one_seconds_worth_passes_at_once() -> None:
    fake = FakeTime()
    limiter = RateLimiter(per_second=20, clock=fake.clock, sleep=fake.sleep)
    for _ in range(20):
        limiter.acquire()
    assert fake.now == 0.0


def test_calls_beyond_the_burst_are_spaced_at_the_rate() -> None:
    fake = FakeTime()
    limiter = RateLimiter(per_second=20, clock=fake.clock, sleep=fake.sleep)
    for _ in range(120):
        limiter.acquire()
    assert abs(fake.now - 5.0) < 1e-6  # 100 calls past the burst at 20/s
