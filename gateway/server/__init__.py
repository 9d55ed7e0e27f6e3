"""The HTTP edge: what every request meets before and after its API's route.

What belongs here: the protocol's deadlines for receiving a request and sending its answer
(`uvicorn_deadlines`), the guards every route passes (header limits, the in-flight cap, the per-key
slots, the body budget, the request id: `edge`, `key_slots`, `bodybudget`), reading a body
(`request_body`, `jsonbody`), and the responses Sluice sends (`responses`: JSON, SSE framing and
the relay of a stream). Nothing here knows a policy, a deployment or an API's wire format.
"""
