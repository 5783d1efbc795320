"""The Faust tables: each declared by one function (key, value, codec, window, changelog)."""
