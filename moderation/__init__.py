"""Text screening and the takedown workflow (issue 5).

Owns masking of personal data, the abuse word list and the regulator-approved
takedown of texts. It may use portal's domain modules but never its web layer
(tests/test_architecture.py enforces that). Nothing is implemented here yet.
"""
