"""Text screening and the takedown workflow.

screening.py: the one call for published text: personal data masked (masking.py) in what
is shown and indexed, abusive language found (abuse.py, word lists in data/) for review;
the stored text stays as submitted. flags.py: abusive texts and replies wait in the
regulator's screening queue, never hidden by a machine. takedowns.py: an insurer asks,
the regulator approves or rejects; only an approved request hides a text (a database
trigger enforces it, migration 0004). See docs/moderation.md and docs/screening.md.

This package may use portal's domain modules but never its web layer
(tests/test_architecture.py enforces that).
"""
