"""The transparency pages' own logic: what each page shows, the report's charts, and browser sign-in.

What belongs here: view data built from what `policies`, `gateway.core` and `gateway.api.privacy`
already compute (`views`), the geometry of the report's inline SVG charts (`charts`), and the
signed, expiring session cookie of the report page (`session`). The route handlers are in
`gateway.api.pages`; the templates and the stylesheet in `gateway/templates/` and `gateway/static/`.
"""
