"""Unit tests: pure logic, no servers. Hypothesis timing checks are off because CI
shares two cores with server builds; correctness, not speed, is under test here."""

from hypothesis import HealthCheck, settings

settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")
