"""The layout package of Civique's user interfaces (the public website, the referents' interface): one look,
one way of handling sessions and forms. It imports no service.

- `pages`: the Jinja2 environment over the shared templates (layout with header, navigation, footer and skip
  links, `lang="fr"`; macros of forms, alerts, pagination; error pages), and `Visit`, a visitor's request:
  session, calls to the public API on their behalf, the answer with its security headers (a strict
  Content-Security-Policy: no inline script or style).
- `sessions` and `csrf`: the session cookie (sealed, HttpOnly, SameSite=Lax, Secure on https) holding the
  gateway's tokens, renewed on the way; the form token every POST must carry.
- `gateway`: the public API (/api/v1) in process or over HTTP. `forms`: what a form shows again after a refusal.
- `site`: what a UI adds to its app: static files (ours under `static/`, the npm packages' dist files), error
  pages in French for browsers.
"""
