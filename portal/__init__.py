"""Gongping (公评): insurance service ratings portal."""
