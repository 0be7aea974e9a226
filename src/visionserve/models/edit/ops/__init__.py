"""The edit operations, pure functions of a PIL image and a parameter model."""
