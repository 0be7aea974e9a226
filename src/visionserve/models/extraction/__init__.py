"""Schema-guided extraction from documents: the local engine behind the extract surface.

``schema`` parses a pattern's schema, ``document`` turns uploads into pages of words
with boxes, ``engine`` answers the schema from those words. Pure: no Ray, no FastAPI.
"""
