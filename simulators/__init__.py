"""Simulators: a whole estate over MQTT, CSV replay, camera clips, with ground truth."""
