"""One module per API: its routes and its wire models, nothing else.

What belongs here: `chat` (`POST /v1/chat/completions`, `POST /v1/embeddings`), `responses`
(`POST /v1/responses`, with its wire model), `models`, `privacy`
(`/v1/privacy/*`), `health`, `metrics`, `admin`, `pages` (the transparency pages, HTML; their view data
in `gateway.pages`), and `openai_protocol` (the OpenAI request models).
A route parses, calls one service of `gateway.core`, and renders; it holds no logic of its own.
"""
