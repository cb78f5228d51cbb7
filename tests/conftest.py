"""The suites' fixtures and rules come from tests/support (a package of plain helpers, never
imported as a conftest): a real Kafka broker, the model prepared once per session, groups of
real workers, the marks every suite carries, and the leak checks after each integration and
fault test."""

pytest_plugins = ["tests.support.fixtures", "tests.support.suites", "tests.support.leaks"]
