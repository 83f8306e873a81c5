"""Layer 9, the report: tables, figures, captions, narrative and the qualitative analysis, in English and Chinese."""
