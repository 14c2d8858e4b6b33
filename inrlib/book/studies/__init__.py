"""One module per chapter's study: what a chapter computes, as functions the chapter and the tests call.

The core library (encodings, layers, models, ntk, train, metrics, data) knows no chapter; these
modules do. ``weyl``: Theorem 1 of paper 000 read two ways; ``scaling``: paper 000's scaling study;
``common``: what several studies share (tolerances, scores, an encoding's description). Their
figures are drawn by :mod:`inrlib.book.plotting`.
"""
