"""The bad-input corpus: hostile requests as data (cases.yaml), the hostile files made in code, the app they hit."""
