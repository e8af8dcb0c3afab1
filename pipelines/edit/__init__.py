"""Text-driven video editing (Wan VACE): restyle an uploaded video or replace its subject."""
