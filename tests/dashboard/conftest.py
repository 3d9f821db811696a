from tests.controller.conftest import runs  # noqa: F401 - the `bakeoff run` subprocess fixture
