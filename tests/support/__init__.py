"""Test helpers shared by the unit, integration and load tests."""
