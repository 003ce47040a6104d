"""Real files of each upload format, written by the format's own library (python-docx, python-pptx, openpyxl,
reportlab, Pillow), so a test reads what those programs write rather than a hand-made fixture."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any


def docx_file() -> bytes:
    import docx

    document = docx.Document()
    document.core_properties.title = "Travel handbook"
    document.add_heading("Expenses", 1)
    document.add_paragraph("Claims are filed within 30 days of the trip.")
    document.add_heading("Per diem", 2)
    document.add_paragraph("Meals are covered.", style="List Bullet")
    document.add_paragraph("Submit the claim form.", style="List Number")
    document.add_paragraph("Wait for the approval.", style="List Number")
    rows = [("City", "Daily allowance"), ("Oslo", "95 EUR"), ("Lisbon", "60 EUR")]
    table = document.add_table(rows=len(rows), cols=2)
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    return _saved(document)


def pptx_file() -> bytes:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "Roadmap"
    first.placeholders[1].text = "The mobile app ships in spring."
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = "Budget"
    table = second.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(6), Inches(1)).table
    for (r, c), value in {(0, 0): "Team", (0, 1): "Budget", (1, 0): "Design", (1, 1): "40k"}.items():
        table.cell(r, c).text = value
    second.notes_slide.notes_text_frame.text = "The design budget was cut by a third after the March review."
    return _saved(deck)


def xlsx_file() -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Revenue"
    sheet.append(["Region", "Q3 revenue", "Owner"])
    sheet.append(["North", "4.2 M", "Ana"])
    sheet.append(["South", 3.5, "Bo"])
    staff = book.create_sheet("Staff")
    staff.append(["Name", "Start date"])
    staff.append(["Ana", dt.date(2024, 3, 1)])
    return _saved(book)


def table_pdf() -> bytes:
    """Two pages; the second has a ruled table between two paragraphs."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Table, TableStyle

    out = io.BytesIO()
    style = getSampleStyleSheet()["Normal"]
    table = Table([["Warehouse", "Pallets", "Manager"], ["Bergen", "120", "Kari"], ["Tromso", "75", "Nils"]])
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)]))
    SimpleDocTemplate(out, pagesize=A4, title="Warehouse report").build(
        [
            Paragraph("This report covers the storage sites of the northern region.", style),
            PageBreak(),
            Paragraph("Stock levels are counted every Friday.", style),
            table,
            Paragraph("The counts are audited in June.", style),
        ]
    )
    return out.getvalue()


def text_image(lines: list[str], size: tuple[int, int] = (1400, 300)) -> Any:
    """A white picture with black text, as a scanner sees a typed page."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    for i, line in enumerate(lines):
        draw.text((40, 40 + i * 80), line, fill="black", font=font)
    return image


def png_file(lines: list[str]) -> bytes:
    out = io.BytesIO()
    text_image(lines).save(out, "PNG")
    return out.getvalue()


def scanned_pdf() -> bytes:
    """Page 1 has a text layer; page 2 is only a picture of text (a scan)."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    pdf = canvas.Canvas(out)
    pdf.drawString(72, 720, "Cover page of the facilities memo.")
    pdf.showPage()
    scan = text_image(["The boiler service is booked for 14 May."])
    pdf.drawImage(ImageReader(scan), 40, 400, width=520, height=112)
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def encrypted_pdf() -> bytes:
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    pdf = canvas.Canvas(out, encrypt="secret")
    pdf.drawString(72, 720, "Locked text.")
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def _saved(document: Any) -> bytes:
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
