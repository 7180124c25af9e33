"""Media: decoding video frames and audio in bounded memory, drawing on frames, and the models a
process loads once and shares."""
