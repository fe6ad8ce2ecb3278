"""The sign-in and consent page of the authorization endpoint: plain, self-contained HTML."""

from __future__ import annotations

from html import escape

from hygeia.server.auth.authorize import SignIn

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;"
          "padding:0 1rem}label{display:block;margin:.8rem 0}input[type=text],"
          "input[type=password]{width:100%;padding:.4rem}ul{padding-left:1.2rem}"
          ".problem{color:#b00020}button{margin-right:.6rem;padding:.4rem 1rem}")


def sign_in_html(page: SignIn) -> str:
    """The page: what the app asks for, the sign-in fields, Allow and Deny."""
    hidden = "".join(f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
                     for name, value in page.request.items())
    asked = "".join(f"<li><code>{escape(scope)}</code></li>"
                    for scope in page.scopes.text.split()) or "<li>nothing</li>"
    problem = f'<p class="problem">{escape(page.problem)}</p>' if page.problem else ""
    patient = ('<label>Patient id <input type="text" name="patient" required></label>'
               if page.needs_patient else "")
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width'>"
        f"<title>Sign in to allow {escape(page.client.name)}</title><style>{_STYLE}</style>"
        f"<h1>Sign in</h1><p><strong>{escape(page.client.name)}</strong> asks to:</p>"
        f"<ul>{asked}</ul>{problem}"
        f'<form method="post" action="/auth/authorize">{hidden}'
        '<label>Username <input type="text" name="username" autocomplete="username" '
        'required></label><label>Password <input type="password" name="password" '
        f'autocomplete="current-password" required></label>{patient}'
        '<button name="decision" value="allow">Allow</button>'
        '<button name="decision" value="deny" formnovalidate>Deny</button></form></html>')
