"""Upstream adapters: one interface (`base.Adapter`), an OpenAI-wire pass-through, and litellm."""
