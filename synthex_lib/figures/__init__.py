"""Plots, overlays, tables and interactive widgets of the book.

Importing any figures module imports this package first, and this package applies the book's look
once (:func:`synthex_lib.figures.style.book_style`: resolution, fonts, the colour-blind-safe palette,
the one label colour map, the table display), so every chapter looks the same whichever figures
module it imports.
"""

from synthex_lib.figures import style as style  # applies the book's look on import
