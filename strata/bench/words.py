"""The fixed word list synthetic prompts are drawn from.

Short, common English words: most BPE tokenizers (Llama, SmolLM2, Qwen, GPT) encode each one,
with its leading space, as a single token, so a prompt of N words is close to N tokens. Never
reorder or edit this list: prompts for a given seed would change and old runs would no longer
be repeatable.
"""

from __future__ import annotations

_TEXT = """
    the of and to in is for on that with as it at by from this be are or have not was an
    all can will more one about which has new their other time also but some when what if
    there out so up into only any use how them than many most then over such first make well
    year work day good may part just even back way long people place after world right
    state city home water house small school great hand high think same much old group under
    number take point show family name look story word give find left tell still end life
    system game book music play open need last large again never food kind night money
    light car real power table line paper road help begin change move live start market
    study sound early north south east west river field plan price child land color fire
    tree dog cat bird fish horse green blue red black white cold warm hot fast slow short
    clear close free full hard late near best simple strong young heart voice mind idea
    question answer reason result order test level class friend window door floor wall
    room cloud train ship rain snow wind stone glass metal wood earth sun moon star sea
    sand hill lake garden street bridge tower summer winter spring morning evening week
    month hour minute letter paint picture report record space energy heat value model
"""

WORDS: tuple[str, ...] = tuple(_TEXT.split())
