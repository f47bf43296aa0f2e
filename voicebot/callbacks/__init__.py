"""Automatic callbacks to missed callers (issue 9): intake, policy, the job
queue, and the dialler that rings a manager and connects the client.

`attempt` is the seam between the queue (which decides *when* and *whom*) and
the dialler (which does it over SIP): the scheduler hands an
`AttemptRequest` to a `Dialler` and records the `AttemptResult`.
"""
