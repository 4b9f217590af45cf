"""Telling someone that a scheduled run failed or was skipped, as cron and AIX do: a line in
the system log (``logger``, which reaches the journal where there is one) and a mail to root
where a mailer exists (``sendmail`` on PATH, ``/usr/sbin/sendmail``, ``/usr/lib/sendmail``).

Each way is tried on its own; what could not be done is returned, so that the run's record
says it (a notice that silently went nowhere would be the defect again).
"""

from __future__ import annotations

import os
import shutil
import subprocess

MAILERS = ("/usr/sbin/sendmail", "/usr/lib/sendmail")


def mailer() -> str | None:
    found = shutil.which("sendmail")
    if found:
        return found
    return next((m for m in MAILERS if os.access(m, os.X_OK)), None)


def _visible(text: str) -> str:
    return "".join(c if c.isprintable() or c == "\n" else f"\\x{ord(c):02x}" for c in text)


def notify(subject: str, body: str) -> list[str]:
    """Send ``subject`` to the system log and, with ``body``, to root by mail.

    Returns one line per way it went: ``"syslog"``, ``"mail to root"``, or why not."""
    said: list[str] = []
    subject = _visible(subject).replace("\n", " ")
    logger = shutil.which("logger")
    if logger:
        try:
            p = subprocess.run([logger, "-t", "aixsmit", "-p", "user.err", "--", subject], capture_output=True,
                               timeout=30, stdin=subprocess.DEVNULL)
            said.append("syslog" if p.returncode == 0 else f"logger failed (exit status {p.returncode})")
        except (OSError, subprocess.TimeoutExpired) as exc:
            said.append(f"logger failed ({exc})")
    else:
        said.append("no logger command")
    mail = mailer()
    if mail:
        message = f"To: root\nSubject: aixsmit: {subject}\n\n{_visible(body)}\n"
        try:
            p = subprocess.run([mail, "-oi", "root"], input=message.encode(errors="replace"), capture_output=True,
                               timeout=60)
            said.append("mail to root" if p.returncode == 0 else f"sendmail failed (exit status {p.returncode})")
        except (OSError, subprocess.TimeoutExpired) as exc:
            said.append(f"sendmail failed ({exc})")
    else:
        said.append("no mailer (sendmail) for a mail to root")
    return said
