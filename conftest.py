"""The fixtures every suite may use (the fake OpenAI server), from cairn_testing: one definition for all."""

pytest_plugins = ["cairn_testing.fixtures"]
