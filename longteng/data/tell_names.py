"""Names of the counterfeit tells the generator knows, in catalogue order.

Kept apart from longteng.data.synth (numpy, Pillow, fonts) so the CLI can list them in
--help without importing the generator; synth/tells.py refuses to load if they differ.
"""

TELL_NAMES: tuple[str, ...] = (
    "glyph_swap",
    "font_weight",
    "logo_misplace",
    "off_palette",
    "cert_mark",
    "print_blur",
    "label_format",
    "proportions",
    "part_layout",
    "surface_finish",
)
