"""The ground every stage stands on: the Vietnamese answer notation, the CometML session, atomic
output files and the terminal. It imports nothing of the project (tests/test_layers.py)."""
