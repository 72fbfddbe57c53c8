pytest_plugins = ["fixtures.components"]
