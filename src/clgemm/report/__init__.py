"""Reports from artifacts: Markdown and self-contained HTML with plots."""

from .render import write_report

__all__ = ["write_report"]
