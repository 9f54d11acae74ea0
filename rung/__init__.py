"""rung: an OpenAI-compatible gateway that sends each request to the smallest able model."""

__version__ = "0.1.0"
