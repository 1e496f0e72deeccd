"""carehub core domain: patients, care coordination, consent, audit and events."""
