"""Credentials never leave the process: the one place that hides them in URLs and text.

Everything grmodel shows or records that may hold a URL (error lines, log records, MLflow
params and tags, Kubeflow run parameters, stage records) passes through :func:`redact`; URLs
handed to a cluster lose their credentials entirely (:func:`strip_credentials`), because pods
read them from the ``grmodel-credentials`` Secret.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# scheme://user:password@host or scheme://token@host
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s'\"]+)@")
# Query parameters that carry a secret (pre-signed URLs, tokens in a query string).
SECRET_KEYS = ("token", "access_token", "auth", "password", "passwd", "pwd", "secret", "key",
               "api_key", "apikey", "sig", "signature", "x-amz-signature", "x-amz-credential",
               "x-amz-security-token")
_KEYS = "|".join(re.escape(k) for k in SECRET_KEYS)
_QUERY = re.compile(rf"(?i)(?P<key>[?&;](?:{_KEYS})=)[^&#\s'\"]+")


def redact(text: Any) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``."""
    text = str(text)
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _QUERY.sub(lambda m: f"{m['key']}{MASK}", text)


def strip_credentials(url: str) -> str:
    """``url`` without user, password or secret query parameters (for values sent to a cluster
    or recorded); other text is returned as it is."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    userinfo, at, netloc = parts.netloc.rpartition("@")
    if at and parts.scheme in ("ssh", "git+ssh") and ":" not in userinfo:
        netloc = f"{userinfo}@{netloc}"  # an ssh login name (git@) is no secret; keys live elsewhere
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if k.lower() not in SECRET_KEYS]
    if netloc == parts.netloc and len(kept) == len(pairs):
        return url  # nothing to strip: the URL as given (urlunsplit would normalise it)
    query = urlencode(kept) if len(kept) != len(pairs) else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class RedactingFilter(logging.Filter):
    """A handler filter that redacts each record's final message (and its traceback text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Redact every record that reaches the handlers of ``logger`` (default: the root)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
