"""The fault tests' linked repository copies (the helpers live in sotai.serving.repo_copy)."""

from sotai.serving.repo_copy import link_copy, replace_with

__all__ = ["link_copy", "replace_with"]
