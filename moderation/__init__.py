"""Text screening and the takedown workflow.

masking.py: personal data in published texts (mobiles, landlines, resident ID numbers,
bank cards, e-mails, insurer policy formats) is masked in what is shown and indexed;
the stored text stays as submitted. The abuse word list and the regulator-approved
takedown workflow are still to come (issue 5).

This package may use portal's domain modules but never its web layer
(tests/test_architecture.py enforces that).
"""
