"""The gateway: app factory, OpenAI wire schemas, routes, pipeline and pure routing decisions."""

from rung.router.app import create_app

__all__ = ["create_app"]
