"""The one pipeline every API uses: authenticate, effective policy, plan, call with failover, badges, ledger.

What belongs here: authentication (`auth`), the deployments (`deployments`), the request as the
pipeline receives it (`request`), content-aware tightening (`sensitive`, pure: no I/O, no
framework), policy routing (`routing`), the request pipeline with its failover loop (`pipeline`),
what differs per wire format (`wires`), where `previous_response_id` goes (`continuations`),
protection against failing upstreams (`resilience`, `retry_after`), the privacy facts each
response discloses (`disclosure`), helpful misses (`misses`) and the services container handlers
reach (`services`). Nothing here speaks HTTP beyond the responses the pipeline returns, and
nothing imports litellm.
"""
