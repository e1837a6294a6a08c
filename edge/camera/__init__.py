"""Thrown-object detection on camera video (OpenCV), its evaluation and its command."""
