"""Deterministic generator of Vietnamese grade 5-6 math word problems with worked solutions.

This is the bundled sample corpus: ``mathpal seed-qdrant`` loads it into a vector database
for the demo and ``prepare-data`` exports it as training data, so it has to look like the
crawled exam problems it stands in for and, above all, be right.  Hence:

* every number in a question or solution is computed here from parameters drawn from a
  seeded ``random.Random`` (results are never typed by hand), and parameters are drawn so
  that results are clean: integers, short decimals or reduced fractions;
* numbers are written in Vietnamese notation, which the downstream grader parses: decimal
  comma (``12,5``), dot thousands separator (``1.200``), ``a/b`` fractions, ``25%``,
  ``×`` for multiplication and ``:`` for division (``mathpal_common.notation.format_number``);
* every solution is step by step and ends with the line ``Đáp số: <answer>``;
* the same ``(n, seed)`` always gives the same problems, byte for byte.

Each template is one small function that draws its parameters and returns a ``Draft``;
the ``@_template`` decorator registers it under a topic and a grade.  Calculation lines in
solutions are written ``<expression> = <result> (<unit>)`` so that they can be re-checked
mechanically (the tests evaluate every such line).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from mathpal_common.notation import MAX_DECIMALS, answer_line, decimal_places, format_fraction, format_number

__all__ = ["TOPICS", "TEMPLATES", "Draft", "Problem", "Template", "generate_problems", "make_problem", "to_content"]

TOPICS: tuple[str, ...] = (
    "four_operations",
    "fractions",
    "decimals",
    "percentages",
    "ratios",
    "averages",
    "unit_conversion",
    "geometry",
    "motion",
    "ages",
    "work_rates",
    "money",
    "gcd_lcm",
    "integers",
)

GRADE_5 = "grade_5"
GRADE_6 = "grade_6"

# Attempts per requested problem before generate_problems gives up (duplicates are skipped).
ATTEMPTS_PER_PROBLEM = 50

PI = Fraction(314, 100)  # Vietnamese textbooks use 3,14

# Names for words that carry a gender ("cô", "chị", "anh", "chú"); NAMES for the rest.
FEMALE_NAMES = ("Mai", "Lan", "Hoa", "Linh", "Hà", "Phương", "Thảo", "Ngọc", "Trang", "Vy", "Hằng", "My")
MALE_NAMES = ("An", "Bình", "Hùng", "Nam", "Minh", "Tuấn", "Dũng", "Khoa", "Quân", "Long", "Đức", "Huy")
NAMES = FEMALE_NAMES + MALE_NAMES


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class Problem:
    """One generated problem; ``answer`` is exactly the text after ``Đáp số: ``."""

    topic: str
    grade_id: str
    question: str
    solution: str
    answer: str


@dataclass(frozen=True)
class Draft:
    """What a template returns: the question, the solution steps and the final answer."""

    question: str
    steps: tuple[str, ...]
    answer: str


Builder = Callable[[random.Random], Draft]


@dataclass(frozen=True)
class Template:
    """A registered problem template: a name (its function's), topic, grade and builder."""

    name: str
    topic: str
    grade_id: str
    build: Builder


_REGISTRY: list[Template] = []


def _template(topic: str, grade_id: str) -> Callable[[Builder], Builder]:
    """Register the decorated builder under ``topic`` and ``grade_id``."""
    if topic not in TOPICS or grade_id not in (GRADE_5, GRADE_6):
        raise ValueError(f"unknown topic or grade: {topic!r}, {grade_id!r}")

    def register(build: Builder) -> Builder:
        _REGISTRY.append(Template(build.__name__, topic, grade_id, build))
        return build

    return register


# --------------------------------------------------------------------------- formatting


_fmt = format_number
_frac = format_fraction


def _pct(x: int | Fraction) -> str:
    """A percentage: 25 → ``25%``."""
    return f"{_fmt(x)}%"


def _signed(x: int | Fraction) -> str:
    """A number as an operand: negative ones in parentheses, ``(-5)``, as textbooks write."""
    return f"({_fmt(x)})" if x < 0 else _fmt(x)


def _calc(expression: str, result: str, unit: str = "") -> str:
    """One calculation line, ``12 × 5 = 60 (m²)``: the form every check expects."""
    line = f"{expression} = {result}"
    return f"{line} ({unit})" if unit else line


def _with_unit(value: str, unit: str) -> str:
    """An answer: the number, then the unit if there is one."""
    return f"{value} {unit}" if unit else value


def _cap(text: str) -> str:
    """Upper-case the first letter only (``str.capitalize`` would lower the rest)."""
    return text[:1].upper() + text[1:]


def _join_vi(items: Sequence[str]) -> str:
    """``a, b và c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " và " + items[-1]


def _fraction_chain(x: Fraction, y: Fraction, op: str) -> str:
    """``3/4 + 1/6 = 9/12 + 2/12 = 11/12``: same denominator first, then reduce."""
    result = x + y if op == "+" else x - y
    common = math.lcm(x.denominator, y.denominator)
    parts = [f"{_frac(x)} {op} {_frac(y)}"]
    a, b = x.numerator * (common // x.denominator), y.numerator * (common // y.denominator)
    if x.denominator != y.denominator:
        parts.append(f"{a}/{common} {op} {b}/{common}")
    raw = f"{a + b if op == '+' else a - b}/{common}"
    parts.append(raw)
    if _frac(result) != raw:
        parts.append(_frac(result))
    return " = ".join(parts)


_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _prime_factors(n: int) -> dict[int, int]:
    """Prime → exponent."""
    factors: dict[int, int] = {}
    p = 2
    while p * p <= n:
        while n % p == 0:
            factors[p] = factors.get(p, 0) + 1
            n //= p
        p += 1
    if n > 1:
        factors[n] = factors.get(n, 0) + 1
    return factors


def _power_product(factors: dict[int, int]) -> str:
    """``2² × 3 × 5`` (textbook notation for a factorisation)."""
    return " × ".join(str(p) + (str(e).translate(_SUPERSCRIPT) if e > 1 else "") for p, e in sorted(factors.items()))


def _is_prime(n: int) -> bool:
    return n > 1 and _prime_factors(n) == {n: 1}


def _simple_fraction(rng: random.Random, denominators: Sequence[int] = tuple(range(2, 10))) -> Fraction:
    """A proper fraction a/b in lowest terms."""
    b = rng.choice(denominators)
    a = rng.choice([k for k in range(1, b) if math.gcd(k, b) == 1])
    return Fraction(a, b)


def _tenths(rng: random.Random, low: int, high: int) -> Fraction:
    """A number with at most one decimal, low/10 … high/10."""
    return Fraction(rng.randint(low, high), 10)


def _hundredths(rng: random.Random, low: int, high: int) -> Fraction:
    """A number with at most two decimals, low/100 … high/100."""
    return Fraction(rng.randint(low, high), 100)


def _places(value: Fraction) -> int:
    """Decimal places of a terminating value; 99 when it does not terminate."""
    try:
        return decimal_places(Fraction(value))
    except ValueError:
        return 99


# =========================================================================== four operations


@_template("four_operations", GRADE_5)
def stock_two_days(rng: random.Random) -> Draft:
    """Stock minus two days of sales, the second day's given as 'more than the first'."""
    good = rng.choice(("gạo", "thóc", "xi măng", "đường", "muối", "phân bón"))
    place, verb = rng.choice((("kho", "xuất"), ("cửa hàng", "bán"), ("hợp tác xã", "bán")))
    total = rng.randrange(6000, 20001, 50)
    first = rng.randrange(1000, total // 4 + 1, 25)
    more = rng.randrange(50, 1001, 25)
    second = first + more
    out = first + second
    left = total - out
    opening = rng.choice(("Ngày thứ nhất", "Ngày đầu"))
    question = (
        f"Một {place} có {_fmt(total)} kg {good}. {opening} {place} {verb} {_fmt(first)} kg {good}, "
        f"ngày thứ hai {verb} nhiều hơn {opening.lower()} {_fmt(more)} kg. "
        f"Hỏi {place} còn lại bao nhiêu ki-lô-gam {good}?"
    )
    steps = (
        f"Ngày thứ hai {place} {verb} số ki-lô-gam {good} là:",
        _calc(f"{_fmt(first)} + {_fmt(more)}", _fmt(second), "kg"),
        f"Cả hai ngày {place} {verb} số ki-lô-gam {good} là:",
        _calc(f"{_fmt(first)} + {_fmt(second)}", _fmt(out), "kg"),
        f"{_cap(place)} còn lại số ki-lô-gam {good} là:",
        _calc(f"{_fmt(total)} - {_fmt(out)}", _fmt(left), "kg"),
    )
    return Draft(question, steps, f"{_fmt(left)} kg")


_BOXED_GOODS = (
    ("thùng", "sữa", "hộp"),
    ("thùng", "vở", "quyển"),
    ("hộp", "bút chì", "chiếc"),
    ("thùng", "mì", "gói"),
    ("khay", "trứng", "quả"),
    ("thùng", "nước khoáng", "chai"),
    ("hộp", "bánh", "chiếc"),
)


@_template("four_operations", GRADE_5)
def boxes_sold(rng: random.Random) -> Draft:
    """Boxes × items per box, minus what was sold."""
    container, good, unit = rng.choice(_BOXED_GOODS)
    shop = rng.choice(("cửa hàng", "siêu thị", "đại lí"))
    boxes = rng.randint(12, 85)
    per = rng.choice((10, 12, 20, 24, 30, 36, 48))
    total = boxes * per
    sold = rng.randint(total // 4, total * 3 // 4)
    left = total - sold
    question = (
        f"Một {shop} nhận về {boxes} {container} {good}, mỗi {container} có {per} {unit}. "
        f"{_cap(shop)} đã bán được {_fmt(sold)} {unit} {good}. "
        f"Hỏi {shop} còn lại bao nhiêu {unit} {good}?"
    )
    steps = (
        f"{_cap(shop)} nhận về số {unit} {good} là:",
        _calc(f"{boxes} × {per}", _fmt(total), unit),
        f"{_cap(shop)} còn lại số {unit} {good} là:",
        _calc(f"{_fmt(total)} - {_fmt(sold)}", _fmt(left), unit),
    )
    return Draft(question, steps, f"{_fmt(left)} {unit}")


@_template("four_operations", GRADE_5)
def expression_value(rng: random.Random) -> Draft:
    """Order of operations: × and : before + and -, brackets first."""
    form = rng.randrange(3)
    if form == 0:
        a, b, d = rng.randint(12, 99), rng.randint(11, 99), rng.randint(2, 9)
        c = d * rng.randint(10, 150)
        expression = f"{a} × {b} + {_fmt(c)} : {d}"
        result = a * b + c // d
        chain = f"{_fmt(a * b)} + {_fmt(c // d)}"
    elif form == 1:
        a = rng.randint(120, 999)
        b = rng.randint(11, a - 20)
        c = rng.randint(2, 30)
        expression = f"({a} - {b}) × {c}"
        result = (a - b) * c
        chain = f"{a - b} × {c}"
    else:
        b, c, d = rng.randint(2, 9), rng.randint(2, 20), rng.randint(2, 9)
        q = rng.randint(c * d + 10, 999)
        a = b * q
        expression = f"{_fmt(a)} : {b} - {c} × {d}"
        result = q - c * d
        chain = f"{q} - {c * d}"
    question = f"Tính giá trị của biểu thức: {expression}"
    steps = (f"{expression} = {chain} = {_fmt(result)}",)
    return Draft(question, steps, _fmt(result))


_FACTORIES = (
    ("xưởng may", "bộ quần áo"),
    ("nhà máy", "chiếc quạt"),
    ("xưởng mộc", "chiếc ghế"),
    ("tổ công nhân", "chiếc cặp sách"),
    ("nhà máy", "chiếc xe đạp"),
)


@_template("four_operations", GRADE_6)
def production_two_periods(rng: random.Random) -> Draft:
    """Two production periods at different daily rates."""
    place, product = rng.choice(_FACTORIES)
    first_days, second_days = rng.randint(3, 12), rng.randint(3, 12)
    rate = rng.randrange(40, 401, 5)
    more = rng.randrange(5, 61, 5)
    first_total = rate * first_days
    second_rate = rate + more
    second_total = second_rate * second_days
    total = first_total + second_total
    question = (
        f"Một {place} trong {first_days} ngày đầu, mỗi ngày sản xuất được {rate} {product}. "
        f"Trong {second_days} ngày tiếp theo, mỗi ngày {place} sản xuất nhiều hơn trước {more} {product}. "
        f"Hỏi sau {first_days + second_days} ngày, {place} sản xuất được tất cả bao nhiêu {product}?"
    )
    steps = (
        f"Trong {first_days} ngày đầu, {place} sản xuất được:",
        _calc(f"{rate} × {first_days}", _fmt(first_total), product),
        f"Mỗi ngày trong {second_days} ngày sau, {place} sản xuất được:",
        _calc(f"{rate} + {more}", _fmt(second_rate), product),
        f"Trong {second_days} ngày sau, {place} sản xuất được:",
        _calc(f"{second_rate} × {second_days}", _fmt(second_total), product),
        f"Tổng số {product} {place} sản xuất được là:",
        _calc(f"{_fmt(first_total)} + {_fmt(second_total)}", _fmt(total), product),
    )
    return Draft(question, steps, f"{_fmt(total)} {product}")


_PACKING = (
    (
        "Có {A} học sinh đi tham quan. Mỗi xe ô tô chở được nhiều nhất {B} học sinh. "
        "Hỏi cần ít nhất bao nhiêu xe ô tô để chở hết số học sinh đó?",
        "học sinh",
        "xe ô tô",
    ),
    (
        "Người ta xếp {A} quả trứng vào các khay, mỗi khay đựng được nhiều nhất {B} quả. "
        "Hỏi cần ít nhất bao nhiêu khay để xếp hết số trứng?",
        "quả trứng",
        "khay",
    ),
    (
        "Thư viện cần chuyển {A} quyển sách, mỗi thùng đựng được nhiều nhất {B} quyển. "
        "Hỏi cần ít nhất bao nhiêu thùng?",
        "quyển sách",
        "thùng",
    ),
    (
        "Một đoàn có {A} người cần qua sông, mỗi chiếc thuyền chở được nhiều nhất {B} người. "
        "Hỏi cần ít nhất bao nhiêu chiếc thuyền để chở cả đoàn qua sông cùng một lúc?",
        "người",
        "chiếc thuyền",
    ),
)


@_template("four_operations", GRADE_6)
def division_with_remainder(rng: random.Random) -> Draft:
    """Division with a remainder where the remainder needs one more container."""
    text, item, container = rng.choice(_PACKING)
    per = rng.randint(8, 50)
    quotient = rng.randint(3, 40)
    remainder = rng.randint(1, per - 1)
    total = per * quotient + remainder
    question = text.format(A=_fmt(total), B=per)
    steps = (
        f"Ta có: {_fmt(total)} = {per} × {quotient} + {remainder}",
        f"Nếu dùng {quotient} {container} thì còn thừa {remainder} {item}, nên cần thêm 1 {container} nữa.",
        f"Số {container} cần ít nhất là:",
        _calc(f"{quotient} + 1", _fmt(quotient + 1), container),
    )
    return Draft(question, steps, f"{_fmt(quotient + 1)} {container}")


# =========================================================================== fractions


_PART_OF_WHOLE = (
    (
        "Một lớp có {N} học sinh, trong đó số học sinh nữ bằng {f} số học sinh cả lớp. "
        "Hỏi lớp đó có bao nhiêu học sinh nữ?",
        "học sinh",
        "Số học sinh nữ của lớp là:",
        (20, 48),
    ),
    (
        "Một cửa hàng có {N} kg gạo và đã bán được {f} số gạo đó. Hỏi cửa hàng đã bán được bao nhiêu ki-lô-gam gạo?",
        "kg",
        "Số gạo cửa hàng đã bán là:",
        (100, 2000),
    ),
    (
        "Quyển truyện của {name} dày {N} trang. {name} đã đọc được {f} số trang. "
        "Hỏi {name} đã đọc được bao nhiêu trang?",
        "trang",
        "Số trang {name} đã đọc là:",
        (60, 400),
    ),
    (
        "Một đoàn khách du lịch có {N} người, trong đó {f} số người là trẻ em. Hỏi đoàn có bao nhiêu trẻ em?",
        "người",
        "Số trẻ em trong đoàn là:",
        (20, 200),
    ),
    (
        "Một mảnh vườn có diện tích {N} m², người ta dùng {f} diện tích để trồng rau. Tính diện tích trồng rau.",
        "m²",
        "Diện tích trồng rau là:",
        (100, 3000),
    ),
)


@_template("fractions", GRADE_5)
def fraction_of_quantity(rng: random.Random) -> Draft:
    """A fraction of a quantity: N × a/b."""
    text, unit, label, (low, high) = rng.choice(_PART_OF_WHOLE)
    f = _simple_fraction(rng)
    whole = f.denominator * rng.randint(-(-low // f.denominator), high // f.denominator)
    part = whole * f
    name = rng.choice(NAMES)
    question = text.format(N=_fmt(whole), f=_frac(f), name=name)
    steps = (label.format(name=name), _calc(f"{_fmt(whole)} × {_frac(f)}", _fmt(part), unit))
    return Draft(question, steps, _with_unit(_fmt(part), unit))


_WHOLE_FROM_PART = (
    (
        "Bạn {name} đã đọc được {X} trang, bằng {f} số trang của quyển sách. Hỏi quyển sách có bao nhiêu trang?",
        "trang",
        "Quyển sách có số trang là:",
        (60, 480),
    ),
    (
        "Đội trồng cây đã trồng được {X} cây, bằng {f} số cây phải trồng theo kế hoạch. "
        "Hỏi theo kế hoạch đội phải trồng bao nhiêu cây?",
        "cây",
        "Số cây đội phải trồng theo kế hoạch là:",
        (100, 3000),
    ),
    (
        "Số học sinh giỏi của một trường là {X} em, bằng {f} số học sinh toàn trường. "
        "Hỏi trường đó có bao nhiêu học sinh?",
        "học sinh",
        "Số học sinh toàn trường là:",
        (300, 1800),
    ),
    (
        "Một người đã đi được {X} km, bằng {f} quãng đường cần đi. Hỏi quãng đường đó dài bao nhiêu ki-lô-mét?",
        "km",
        "Quãng đường đó dài là:",
        (20, 400),
    ),
)


@_template("fractions", GRADE_6)
def whole_from_fraction(rng: random.Random) -> Draft:
    """The whole from a known part: X : a/b."""
    text, unit, label, (low, high) = rng.choice(_WHOLE_FROM_PART)
    f = _simple_fraction(rng)
    k = rng.randint(-(-low // f.denominator), high // f.denominator)
    whole, part = f.denominator * k, f.numerator * k
    question = text.format(X=_fmt(part), f=_frac(f), name=rng.choice(NAMES))
    steps = (label, _calc(f"{_fmt(part)} : {_frac(f)}", _fmt(whole), unit))
    return Draft(question, steps, _with_unit(_fmt(whole), unit))


_TWO_PARTS = (
    (
        "Giờ thứ nhất một người đi bộ được {f1} quãng đường, giờ thứ hai đi được {f2} quãng đường. "
        "Hỏi sau hai giờ người đó đi được bao nhiêu phần quãng đường?",
        "Sau hai giờ người đó đi được:",
        "quãng đường",
    ),
    (
        "Giờ đầu một vòi nước chảy được {f1} bể, giờ thứ hai chảy được {f2} bể. "
        "Hỏi sau hai giờ vòi nước chảy được bao nhiêu phần bể?",
        "Sau hai giờ vòi nước chảy được:",
        "bể",
    ),
    (
        "Ngày thứ nhất một đội công nhân sửa được {f1} con đường, ngày thứ hai sửa được {f2} con đường. "
        "Hỏi sau hai ngày đội sửa được bao nhiêu phần con đường?",
        "Sau hai ngày đội sửa được:",
        "con đường",
    ),
    (
        "{name} đọc một quyển sách: ngày đầu đọc được {f1} quyển sách, ngày sau đọc được {f2} quyển sách. "
        "Hỏi sau hai ngày {name} đọc được bao nhiêu phần quyển sách?",
        "Sau hai ngày {name} đọc được:",
        "quyển sách",
    ),
)


def _two_fractions_below_one(rng: random.Random) -> tuple[Fraction, Fraction]:
    """Two proper fractions, different denominators where possible, summing to less than 1."""
    while True:
        f1 = _simple_fraction(rng, (2, 3, 4, 5, 6, 8, 10, 12))
        f2 = _simple_fraction(rng, (3, 4, 5, 6, 7, 8, 9, 10))
        if f1 + f2 < 1 and f1.denominator != f2.denominator:
            return f1, f2


@_template("fractions", GRADE_5)
def add_fractions_of_whole(rng: random.Random) -> Draft:
    """Adding unlike fractions of the same whole."""
    text, label, unit = rng.choice(_TWO_PARTS)
    f1, f2 = _two_fractions_below_one(rng)
    name = rng.choice(NAMES)
    question = text.format(f1=_frac(f1), f2=_frac(f2), name=name)
    steps = (label.format(name=name), f"{_fraction_chain(f1, f2, '+')} ({unit})")
    return Draft(question, steps, f"{_frac(f1 + f2)} {unit}")


@_template("fractions", GRADE_6)
def remaining_fraction(rng: random.Random) -> Draft:
    """1 minus two fractions, then that fraction of a quantity."""
    f1, f2 = _two_fractions_below_one(rng)
    common = math.lcm(f1.denominator, f2.denominator)
    used, rest = f1 + f2, 1 - f1 - f2
    if rng.random() < 0.5:
        total = common * rng.randint(max(1, 120 // common), 3000 // common)
        question = (
            f"Một mảnh vườn có diện tích {_fmt(total)} m². Người ta dùng {_frac(f1)} diện tích để trồng rau, "
            f"{_frac(f2)} diện tích để trồng hoa, phần còn lại để đào ao. Tính diện tích ao."
        )
        labels = (
            "Phân số chỉ diện tích trồng rau và trồng hoa là:",
            "Phân số chỉ diện tích ao là:",
            "Diện tích ao là:",
        )
        unit = "m²"
    else:
        total = common * 1000 * rng.randint(max(1, 60 // common), 2000 // common)
        question = (
            f"Bác {rng.choice(NAMES)} có {_fmt(total)} đồng. Bác dùng {_frac(f1)} số tiền để mua gạo, "
            f"{_frac(f2)} số tiền để mua thức ăn. Hỏi bác còn lại bao nhiêu tiền?"
        )
        labels = ("Phân số chỉ số tiền đã tiêu là:", "Phân số chỉ số tiền còn lại là:", "Số tiền bác còn lại là:")
        unit = "đồng"
    left = total * rest
    steps = (
        labels[0],
        _fraction_chain(f1, f2, "+"),
        labels[1],
        _calc(f"1 - {_frac(used)}", _frac(rest)),
        labels[2],
        _calc(f"{_fmt(total)} × {_frac(rest)}", _fmt(left), unit),
    )
    return Draft(question, steps, f"{_fmt(left)} {unit}")


@_template("fractions", GRADE_6)
def fraction_arithmetic(rng: random.Random) -> Draft:
    """Multiply, divide or subtract two fractions and reduce the result."""
    f1 = _simple_fraction(rng, tuple(range(2, 13)))
    f2 = _simple_fraction(rng, tuple(range(2, 13)))
    form = rng.randrange(3)
    if form == 2 and f1 == f2:
        form = 0
    if form == 0:
        expression = f"{_frac(f1)} × {_frac(f2)}"
        result = f1 * f2
        raw = f"{f1.numerator * f2.numerator}/{f1.denominator * f2.denominator}"
        chain = [expression, raw]
    elif form == 1:
        expression = f"{_frac(f1)} : {_frac(f2)}"
        result = f1 / f2
        inverse = f"{f2.denominator}/{f2.numerator}" if f2.numerator != 1 else str(f2.denominator)
        raw = f"{f1.numerator * f2.denominator}/{f1.denominator * f2.numerator}"
        chain = [expression, f"{_frac(f1)} × {inverse}", raw]
    else:
        big, small = max(f1, f2), min(f1, f2)
        expression = f"{_frac(big)} - {_frac(small)}"
        result = big - small
        chain = [_fraction_chain(big, small, "-")]
    if form != 2 and _frac(result) != chain[-1]:
        chain.append(_frac(result))
    question = f"Tính: {expression}"
    return Draft(question, (" = ".join(chain),), _frac(result))


# =========================================================================== decimals


_CUTTING = (
    (
        "Một tấm vải dài {X} m. Người ta cắt đi {Y} m để may áo, phần còn lại chia đều thành {n} mảnh. "
        "Hỏi mỗi mảnh vải dài bao nhiêu mét?",
        "Mỗi mảnh vải dài là:",
    ),
    (
        "Một cuộn dây điện dài {X} m. Thợ điện đã dùng hết {Y} m, phần còn lại cắt thành {n} đoạn dài bằng nhau. "
        "Hỏi mỗi đoạn dây dài bao nhiêu mét?",
        "Mỗi đoạn dây dài là:",
    ),
    (
        "Một sợi dây thép dài {X} m. Người ta cắt bớt {Y} m rồi chia đều phần còn lại thành {n} đoạn. "
        "Hỏi mỗi đoạn dài bao nhiêu mét?",
        "Mỗi đoạn dài là:",
    ),
)


@_template("decimals", GRADE_5)
def cut_and_share(rng: random.Random) -> Draft:
    """Decimal subtraction, then division by a whole number."""
    text, label = rng.choice(_CUTTING)
    piece = _hundredths(rng, 120, 950)
    n = rng.randint(3, 12)
    cut = _tenths(rng, 5, 150)
    rest = piece * n
    total = rest + cut
    question = text.format(X=_fmt(total), Y=_fmt(cut), n=n)
    steps = (
        "Phần còn lại dài là:",
        _calc(f"{_fmt(total)} - {_fmt(cut)}", _fmt(rest), "m"),
        label,
        _calc(f"{_fmt(rest)} : {n}", _fmt(piece), "m"),
    )
    return Draft(question, steps, f"{_fmt(piece)} m")


@_template("decimals", GRADE_5)
def can_of_oil(rng: random.Random) -> Draft:
    """Litres × kg per litre, plus the empty can."""
    liquid = rng.choice(("dầu hoả", "dầu ăn", "dầu nhớt"))
    density = rng.choice((Fraction(72, 100), Fraction(75, 100), Fraction(8, 10), Fraction(85, 100), Fraction(9, 10)))
    litres = rng.randint(10, 150)
    can = _tenths(rng, 15, 80)
    oil = litres * density
    total = oil + can
    question = (
        f"Một thùng đựng {litres} l {liquid}, mỗi lít {liquid} cân nặng {_fmt(density)} kg. "
        f"Thùng rỗng cân nặng {_fmt(can)} kg. Hỏi cả thùng {liquid} cân nặng bao nhiêu ki-lô-gam?"
    )
    steps = (
        f"Số {liquid} trong thùng cân nặng là:",
        _calc(f"{litres} × {_fmt(density)}", _fmt(oil), "kg"),
        f"Cả thùng {liquid} cân nặng là:",
        _calc(f"{_fmt(oil)} + {_fmt(can)}", _fmt(total), "kg"),
    )
    return Draft(question, steps, f"{_fmt(total)} kg")


@_template("decimals", GRADE_5)
def bottles_needed(rng: random.Random) -> Draft:
    """Division by a decimal: litres : litres per bottle."""
    liquid = rng.choice(("nước mắm", "dầu ăn", "nước cam", "sữa tươi", "nước táo"))
    size = rng.choice((Fraction(1, 4), Fraction(2, 5), Fraction(1, 2), Fraction(3, 4), Fraction(5, 4), Fraction(3, 2)))
    count = rng.randint(12, 240)
    litres = size * count
    question = (
        f"Có {_fmt(litres)} l {liquid} được rót đều vào các chai, mỗi chai chứa {_fmt(size)} l. "
        f"Hỏi rót được bao nhiêu chai {liquid}?"
    )
    steps = (f"Số chai {liquid} rót được là:", _calc(f"{_fmt(litres)} : {_fmt(size)}", _fmt(count), "chai"))
    return Draft(question, steps, f"{_fmt(count)} chai")


@_template("decimals", GRADE_6)
def decimal_expression(rng: random.Random) -> Draft:
    """Order of operations with decimals."""
    form = rng.randrange(3)
    if form == 0:
        a = _hundredths(rng, 101, 9999)
        b = _tenths(rng, 11, 999)
        c = rng.choice((rng.randint(2, 9), _tenths(rng, 11, 99)))
        expression = f"{_fmt(a)} + {_fmt(b)} × {_fmt(c)}"
        result = a + b * c
        middle = f"{_fmt(a)} + {_fmt(b * c)}"
    elif form == 1:
        divisor = rng.choice((2, 4, 5, 8, Fraction(1, 2), Fraction(5, 2)))
        quotient = _hundredths(rng, 11, 999)
        difference = quotient * divisor
        b = _tenths(rng, 11, 999)
        a = difference + b
        expression = f"({_fmt(a)} - {_fmt(b)}) : {_fmt(divisor)}"
        result = quotient
        middle = f"{_fmt(difference)} : {_fmt(divisor)}"
    else:
        a = _tenths(rng, 11, 99)
        b = rng.choice((rng.randint(10, 99), _tenths(rng, 11, 99)))
        product = a * b
        c = _hundredths(rng, 1, int(product * 100) - 1)
        expression = f"{_fmt(a)} × {_fmt(b)} - {_fmt(c)}"
        result = product - c
        middle = f"{_fmt(product)} - {_fmt(c)}"
    question = f"Tính giá trị của biểu thức: {expression}"
    return Draft(question, (f"{expression} = {middle} = {_fmt(result)}",), _fmt(result))


# =========================================================================== percentages


_PERCENT_OF = (
    (
        "Một trường có {N} học sinh, trong đó số học sinh nữ chiếm {p}. Hỏi trường đó có bao nhiêu học sinh nữ?",
        "học sinh",
        "Số học sinh nữ của trường là:",
        (200, 1500),
    ),
    (
        "Một mảnh đất có diện tích {N} m², trong đó {p} diện tích được dùng để làm nhà. Tính diện tích đất làm nhà.",
        "m²",
        "Diện tích đất làm nhà là:",
        (100, 2000),
    ),
    (
        "Một trang trại nuôi {N} con gà, trong đó {p} là gà mái. Hỏi trang trại có bao nhiêu con gà mái?",
        "con",
        "Số gà mái của trang trại là:",
        (100, 3000),
    ),
    (
        "Một nhà máy phải sản xuất {N} sản phẩm, đến nay đã làm được {p} kế hoạch. "
        "Hỏi nhà máy đã sản xuất được bao nhiêu sản phẩm?",
        "sản phẩm",
        "Số sản phẩm đã sản xuất được là:",
        (500, 5000),
    ),
    (
        "Lớp của {name} có {N} học sinh, trong đó {p} số học sinh đạt loại giỏi. Hỏi lớp có bao nhiêu học sinh giỏi?",
        "học sinh",
        "Số học sinh giỏi của lớp là:",
        (20, 50),
    ),
)

_PERCENTS = (5, 10, 12, 15, 20, 25, 30, 35, 40, 45, 50, 60, 75, 80)


def _multiple_for_percent(rng: random.Random, p: int, low: int, high: int) -> int:
    """A number in [low, high] of which p% is a whole number."""
    step = 100 // math.gcd(p, 100)
    return step * rng.randint(-(-low // step), high // step)


@_template("percentages", GRADE_5)
def percent_of_quantity(rng: random.Random) -> Draft:
    """p% of N = N × p : 100."""
    text, unit, label, (low, high) = rng.choice(_PERCENT_OF)
    p = rng.choice(_PERCENTS)
    whole = _multiple_for_percent(rng, p, low, high)
    part = whole * p // 100
    question = text.format(N=_fmt(whole), p=_pct(p), name=rng.choice(NAMES))
    steps = (label, _calc(f"{_fmt(whole)} × {p} : 100", _fmt(part), unit))
    return Draft(question, steps, f"{_fmt(part)} {unit}")


_PERCENT_RATIO = (
    (
        "Một lớp có {N} học sinh, trong đó có {K} học sinh giỏi. "
        "Tìm tỉ số phần trăm của số học sinh giỏi và số học sinh cả lớp.",
        "Tỉ số phần trăm của số học sinh giỏi và số học sinh cả lớp là:",
        (20, 25, 40, 50),
    ),
    (
        "Một cửa hàng có {N} kg gạo, đã bán được {K} kg. Hỏi cửa hàng đã bán được bao nhiêu phần trăm số gạo?",
        "Tỉ số phần trăm của số gạo đã bán và số gạo của cửa hàng là:",
        (80, 125, 200, 250, 400, 500),
    ),
    (
        "Một xạ thủ bắn {N} viên đạn, có {K} viên trúng đích. "
        "Tính tỉ số phần trăm của số viên trúng đích và số viên đã bắn.",
        "Tỉ số phần trăm của số viên trúng đích và số viên đã bắn là:",
        (20, 25, 40, 50),
    ),
    (
        "Trong vườn có {N} cây ăn quả, trong đó có {K} cây cam. "
        "Số cây cam chiếm bao nhiêu phần trăm số cây trong vườn?",
        "Tỉ số phần trăm của số cây cam và số cây trong vườn là:",
        (40, 50, 80, 125, 200, 250),
    ),
)


@_template("percentages", GRADE_5)
def percent_ratio(rng: random.Random) -> Draft:
    """K : N as a percentage."""
    text, label, totals = rng.choice(_PERCENT_RATIO)
    whole = rng.choice(totals)
    while True:
        part = rng.randint(1, whole - 1)
        if _places(Fraction(part, whole)) <= MAX_DECIMALS:
            break
    ratio = Fraction(part, whole)
    question = text.format(N=_fmt(whole), K=_fmt(part))
    steps = (label, f"{_fmt(part)} : {_fmt(whole)} = {_fmt(ratio)} = {_pct(ratio * 100)}")
    return Draft(question, steps, _pct(ratio * 100))


_WHOLE_FROM_PERCENT = (
    (
        "Số học sinh nam của một trường là {X} em, chiếm {p} số học sinh toàn trường. "
        "Hỏi trường đó có bao nhiêu học sinh?",
        "học sinh",
        "Số học sinh toàn trường là:",
        (300, 2000),
    ),
    (
        "Một cửa hàng đã bán được {X} kg đường, bằng {p} số đường của cửa hàng. "
        "Hỏi lúc đầu cửa hàng có bao nhiêu ki-lô-gam đường?",
        "kg",
        "Lúc đầu cửa hàng có số đường là:",
        (100, 3000),
    ),
    (
        "Một đội bóng đã thắng {X} trận, chiếm {p} số trận đã đấu. Hỏi đội bóng đã đấu bao nhiêu trận?",
        "trận",
        "Số trận đội bóng đã đấu là:",
        (20, 80),
    ),
    (
        "Bạn {name} đã tiết kiệm được {X} đồng, bằng {p} số tiền cần để mua một chiếc cặp. "
        "Hỏi chiếc cặp giá bao nhiêu tiền?",
        "đồng",
        "Giá tiền chiếc cặp là:",
        (100, 600),
    ),
)


@_template("percentages", GRADE_5)
def whole_from_percent(rng: random.Random) -> Draft:
    """The whole from p% of it: X × 100 : p."""
    text, unit, label, (low, high) = rng.choice(_WHOLE_FROM_PERCENT)
    p = rng.choice(_PERCENTS)
    whole = _multiple_for_percent(rng, p, low, high)
    if unit == "đồng":
        whole *= 1000
    part = whole * p // 100
    question = text.format(X=_fmt(part), p=_pct(p), name=rng.choice(NAMES))
    steps = (label, _calc(f"{_fmt(part)} × 100 : {p}", _fmt(whole), unit))
    return Draft(question, steps, f"{_fmt(whole)} {unit}")


_PLANS = (
    (
        "một xưởng phải sản xuất {N} sản phẩm. Thực tế xưởng đã sản xuất được {M} sản phẩm. "
        "Hỏi xưởng đã vượt mức kế hoạch bao nhiêu phần trăm?",
        "số sản phẩm làm được",
    ),
    (
        "một xã phải trồng {N} cây xanh. Thực tế xã đã trồng được {M} cây. "
        "Hỏi xã đã vượt mức kế hoạch bao nhiêu phần trăm?",
        "số cây đã trồng",
    ),
    (
        "một đội phải thu hoạch {N} tấn lúa. Thực tế đội đã thu hoạch được {M} tấn. "
        "Hỏi đội đã vượt mức kế hoạch bao nhiêu phần trăm?",
        "số lúa thu hoạch được",
    ),
)


@_template("percentages", GRADE_6)
def percent_over_plan(rng: random.Random) -> Draft:
    """Actual : plan as a percentage, minus 100%."""
    text, what = rng.choice(_PLANS)
    extra = rng.randint(2, 40)
    plan = _multiple_for_percent(rng, extra, 100, 3000)
    actual = plan * (100 + extra) // 100
    ratio = Fraction(actual, plan)
    question = "Theo kế hoạch, " + text.format(N=_fmt(plan), M=_fmt(actual))
    steps = (
        f"Tỉ số phần trăm của {what} và kế hoạch là:",
        f"{_fmt(actual)} : {_fmt(plan)} = {_fmt(ratio)} = {_pct(ratio * 100)}",
        "Số phần trăm vượt mức kế hoạch là:",
        _calc(f"{_pct(ratio * 100)} - 100%", _pct(extra)),
    )
    return Draft(question, steps, _pct(extra))


@_template("percentages", GRADE_6)
def dilute_salt_water(rng: random.Random) -> Draft:
    """Salt stays the same when water is added: solve for the new mass."""
    while True:
        p = rng.choice((4, 5, 8, 10, 20, 25))
        q = rng.choice((2, 4, 5, 8, 10, 20))
        if q < p:
            break
    step = math.lcm(p // math.gcd(p, 100), q // math.gcd(q, 100))
    salt = step * rng.randint(-(-5 // step), 60 // step)
    before, after = salt * 100 // p, salt * 100 // q
    question = (
        f"Có {_fmt(before)} g nước muối chứa {_pct(p)} muối. Hỏi phải đổ thêm bao nhiêu gam nước lọc "
        f"để được loại nước muối chứa {_pct(q)} muối?"
    )
    steps = (
        f"Lượng muối có trong {_fmt(before)} g nước muối là:",
        _calc(f"{_fmt(before)} × {p} : 100", _fmt(salt), "g"),
        f"Lượng nước muối chứa {_pct(q)} muối có được là:",
        _calc(f"{_fmt(salt)} × 100 : {q}", _fmt(after), "g"),
        "Cần đổ thêm số gam nước lọc là:",
        _calc(f"{_fmt(after)} - {_fmt(before)}", _fmt(after - before), "g"),
    )
    return Draft(question, steps, f"{_fmt(after - before)} g")


# =========================================================================== ratios

_RATIO_PAIRS = tuple(Fraction(a, b) for b in range(2, 10) for a in range(1, b) if math.gcd(a, b) == 1) + tuple(
    Fraction(b, a) for b in range(3, 8) for a in range(2, b) if math.gcd(a, b) == 1
)

_SUM_RATIO = (
    (
        "Hai kho chứa tất cả {S} tấn thóc. Số thóc ở kho thứ nhất bằng {f} số thóc ở kho thứ hai. "
        "Hỏi kho thứ nhất chứa bao nhiêu tấn thóc?",
        True,
        "tấn",
        "Số thóc ở kho thứ nhất là:",
    ),
    (
        "Hai tổ trồng được tất cả {S} cây. Số cây tổ Một trồng được bằng {f} số cây tổ Hai. "
        "Hỏi tổ Hai trồng được bao nhiêu cây?",
        False,
        "cây",
        "Số cây tổ Hai trồng được là:",
    ),
    ("Tổng của hai số là {S}. Số thứ nhất bằng {f} số thứ hai. Tìm số thứ nhất.", True, "", "Số thứ nhất là:"),
    (
        "{n1} và {n2} có tất cả {S} viên bi. Số bi của {n1} bằng {f} số bi của {n2}. Hỏi {n2} có bao nhiêu viên bi?",
        False,
        "viên bi",
        "Số bi của {n2} là:",
    ),
)


@_template("ratios", GRADE_5)
def sum_and_ratio(rng: random.Random) -> Draft:
    """Sum and ratio: total : (a + b) × a."""
    text, ask_first, unit, label = rng.choice(_SUM_RATIO)
    f = rng.choice(_RATIO_PAIRS)
    a, b = f.numerator, f.denominator
    one = rng.randint(2, 120 if unit == "tấn" else 250)
    total = (a + b) * one
    asked = a if ask_first else b
    n1, n2 = rng.sample(NAMES, 2)
    question = text.format(S=_fmt(total), f=_frac(f), n1=n1, n2=n2)
    steps = (
        "Theo sơ đồ, tổng số phần bằng nhau là:",
        _calc(f"{a} + {b}", _fmt(a + b), "phần"),
        label.format(n2=n2),
        _calc(f"{_fmt(total)} : {a + b} × {asked}", _fmt(one * asked), unit),
    )
    return Draft(question, steps, _with_unit(_fmt(one * asked), unit))


_DIFFERENCE_RATIO = (
    (
        "Một trường có số học sinh nữ nhiều hơn số học sinh nam {D} em. Số học sinh nam bằng {f} số học sinh nữ. "
        "Hỏi trường đó có bao nhiêu học sinh nam?",
        True,
        "học sinh",
        "Số học sinh nam của trường là:",
    ),
    ("Hiệu của hai số là {D}. Số bé bằng {f} số lớn. Tìm số lớn.", False, "", "Số lớn là:"),
    (
        "Một thửa ruộng hình chữ nhật có chiều dài hơn chiều rộng {D} m, chiều rộng bằng {f} chiều dài. "
        "Tính chiều dài thửa ruộng.",
        False,
        "m",
        "Chiều dài thửa ruộng là:",
    ),
    (
        "Kho thứ hai có nhiều hơn kho thứ nhất {D} tấn gạo. Số gạo ở kho thứ nhất bằng {f} số gạo ở kho thứ hai. "
        "Hỏi kho thứ nhất có bao nhiêu tấn gạo?",
        True,
        "tấn",
        "Số gạo ở kho thứ nhất là:",
    ),
)


@_template("ratios", GRADE_5)
def difference_and_ratio(rng: random.Random) -> Draft:
    """Difference and ratio: difference : (b - a) × a (or × b)."""
    text, ask_small, unit, label = rng.choice(_DIFFERENCE_RATIO)
    f = _simple_fraction(rng)
    a, b = f.numerator, f.denominator
    one = rng.randint(2, 90)
    difference = (b - a) * one
    asked = a if ask_small else b
    question = text.format(D=_fmt(difference), f=_frac(f))
    steps = (
        "Theo sơ đồ, hiệu số phần bằng nhau là:",
        _calc(f"{b} - {a}", _fmt(b - a), "phần"),
        label,
        _calc(f"{_fmt(difference)} : {b - a} × {asked}", _fmt(one * asked), unit),
    )
    return Draft(question, steps, _with_unit(_fmt(one * asked), unit))


_MAP_ROUTES_NEAR = (
    "từ nhà {name} đến trường",
    "từ cổng làng đến chợ",
    "từ trường học đến công viên",
    "từ nhà văn hoá đến bờ hồ",
)
_MAP_ROUTES_FAR = ("từ thành phố A đến thành phố B", "từ thị xã đến bờ biển", "giữa hai tỉnh lị M và N")


@_template("ratios", GRADE_6)
def map_scale(rng: random.Random) -> Draft:
    """Map distance × scale, then cm to km."""
    if rng.random() < 0.5:
        scale = rng.choice((10_000, 20_000, 25_000, 50_000))
        route = rng.choice(_MAP_ROUTES_NEAR).format(name=rng.choice(NAMES))
        on_map = _tenths(rng, 20, 300)
    else:
        scale = rng.choice((100_000, 200_000, 500_000, 1_000_000))
        route = rng.choice(_MAP_ROUTES_FAR)
        on_map = _tenths(rng, 20, 400)
    real_cm = on_map * scale
    real_km = real_cm / 100_000
    question = (
        f"Trên bản đồ tỉ lệ 1 : {_fmt(scale)}, quãng đường {route} đo được {_fmt(on_map)} cm. "
        f"Hỏi quãng đường đó trên thực tế dài bao nhiêu ki-lô-mét?"
    )
    steps = (
        "Quãng đường đó trên thực tế dài là:",
        _calc(f"{_fmt(on_map)} × {_fmt(scale)}", _fmt(real_cm), "cm"),
        f"Đổi: {_fmt(real_cm)} cm = {_fmt(real_km)} km",
    )
    return Draft(question, steps, f"{_fmt(real_km)} km")


@_template("ratios", GRADE_6)
def ratio_of_two_quantities(rng: random.Random) -> Draft:
    """The ratio a : b as a reduced fraction (same unit first, if needed)."""
    if rng.random() < 0.5:
        kind = rng.choice((("nam", "nữ"), ("nữ", "nam")))
        while True:
            first, second = rng.randint(10, 30), rng.randint(10, 30)
            if Fraction(first, second).denominator != 1:
                break
        question = (
            f"Một lớp có {first} học sinh {kind[0]} và {second} học sinh {kind[1]}. "
            f"Tìm tỉ số của số học sinh {kind[0]} và số học sinh {kind[1]}."
        )
        steps: tuple[str, ...] = (f"Tỉ số của số học sinh {kind[0]} và số học sinh {kind[1]} là:",)
        a, b = first, second
    else:
        while True:
            x, y = rng.randint(3, 95), rng.randint(2, 15)
            if Fraction(x, 10 * y).denominator != 1:
                break
        question = (
            f"Đoạn thẳng AB dài {x} cm, đoạn thẳng CD dài {y} dm. Tìm tỉ số độ dài của đoạn thẳng AB và đoạn thẳng CD."
        )
        steps = (f"Đổi: {y} dm = {10 * y} cm", "Tỉ số độ dài của đoạn thẳng AB và đoạn thẳng CD là:")
        a, b = x, 10 * y
    ratio = Fraction(a, b)
    chain = f"{a} : {b} = {a}/{b}"
    if _frac(ratio) != f"{a}/{b}":
        chain += f" = {_frac(ratio)}"
    return Draft(question, steps + (chain,), _frac(ratio))


@_template("ratios", GRADE_5)
def direct_proportion(rng: random.Random) -> Draft:
    """Direct proportion, by 'how many times' or by the unit amount."""
    if rng.random() < 0.5:
        vehicle = rng.choice(("ô tô", "xe khách", "xe tải"))
        per_100 = rng.choice((rng.randint(6, 14), _tenths(rng, 60, 140)))
        distance = rng.choice([d for d in range(50, 601, 50) if d != 100])
        times = Fraction(distance, 100)
        fuel = per_100 * times
        question = (
            f"Một chiếc {vehicle} cứ đi 100 km thì tiêu thụ hết {_fmt(per_100)} l xăng. "
            f"Hỏi chiếc {vehicle} đó đi quãng đường {distance} km thì tiêu thụ hết bao nhiêu lít xăng?"
        )
        steps = (
            f"{distance} km gấp 100 km số lần là:",
            _calc(f"{distance} : 100", _fmt(times), "lần"),
            "Số lít xăng cần dùng là:",
            _calc(f"{_fmt(per_100)} × {_fmt(times)}", _fmt(fuel), "l"),
        )
        return Draft(question, steps, f"{_fmt(fuel)} l")
    good, weight = rng.choice((("xi măng", 50), ("gạo", 25), ("muối", 40), ("phân bón", 50), ("cám", 30)))
    while True:
        count, asked = rng.randint(2, 12), rng.randint(2, 12) * rng.randint(1, 8)
        if count != asked:
            break
    total = count * weight
    question = (
        f"Cứ {count} bao {good} như nhau thì nặng {_fmt(total)} kg. "
        f"Hỏi {asked} bao {good} như thế nặng bao nhiêu ki-lô-gam?"
    )
    steps = (
        f"Mỗi bao {good} nặng là:",
        _calc(f"{_fmt(total)} : {count}", _fmt(weight), "kg"),
        f"{asked} bao {good} nặng là:",
        _calc(f"{weight} × {asked}", _fmt(weight * asked), "kg"),
    )
    return Draft(question, steps, f"{_fmt(weight * asked)} kg")


# =========================================================================== averages


_MEASUREMENTS = (
    # (question start, question, step label, unit, scale (values are integers / scale), low, high, spread)
    (
        "Chiều cao của {n} bạn {names} lần lượt là {values}.",
        "Hỏi trung bình mỗi bạn cao bao nhiêu mét?",
        "Trung bình mỗi bạn cao là:",
        "m",
        100,
        128,
        158,
        8,
    ),
    (
        "Cân nặng của {n} bạn {names} lần lượt là {values}.",
        "Hỏi trung bình mỗi bạn cân nặng bao nhiêu ki-lô-gam?",
        "Trung bình mỗi bạn cân nặng là:",
        "kg",
        10,
        280,
        420,
        40,
    ),
    (
        "Lớp của {name} có {n} tổ thu gom giấy vụn, số giấy các tổ thu được lần lượt là {values}.",
        "Hỏi trung bình mỗi tổ thu được bao nhiêu ki-lô-gam giấy vụn?",
        "Trung bình mỗi tổ thu được là:",
        "kg",
        1,
        18,
        60,
        9,
    ),
)


@_template("averages", GRADE_5)
def average_of_list(rng: random.Random) -> Draft:
    """Mean of 3-5 measurements (the values are drawn around a clean mean)."""
    text, ask, label, unit, scale, low, high, spread = rng.choice(_MEASUREMENTS)
    n = rng.randint(3, 5)
    mean = rng.randint(low + spread, high - spread)
    offsets = [rng.randint(-spread // 2, spread // 2) for _ in range(n - 1)]
    units = [mean + d for d in offsets] + [mean - sum(offsets)]
    values = [Fraction(v, scale) for v in units]
    total = sum(values, Fraction(0))
    shown = [f"{_fmt(v)} {unit}" for v in values]
    listed = "; ".join(shown[:-1]) + " và " + shown[-1]
    names = rng.sample(NAMES, n)
    question = text.format(n=n, names=_join_vi(names), values=listed, name=names[0]) + " " + ask
    steps = (label, f"({' + '.join(_fmt(v) for v in values)}) : {n} = {_fmt(total)} : {n} = {_fmt(total / n)} ({unit})")
    return Draft(question, steps, f"{_fmt(total / n)} {unit}")


@_template("averages", GRADE_5)
def average_three_days(rng: random.Random) -> Draft:
    """Mean of three days' sales given as differences."""
    good, unit, word = rng.choice(
        (("đường", "kg", "ki-lô-gam"), ("gạo", "kg", "ki-lô-gam"), ("vải", "m", "mét"), ("sách", "quyển", "quyển"))
    )
    first = rng.randint(30, 400)
    more = rng.randint(5, 60)
    while True:
        less = rng.randint(3, 80)
        if (2 * more - less) % 3 == 0 and less < first + more:
            break
    second, third = first + more, first + more - less
    total = first + second + third
    question = (
        f"Một cửa hàng ngày thứ nhất bán được {first} {unit} {good}, ngày thứ hai bán được nhiều hơn ngày thứ nhất "
        f"{more} {unit}, ngày thứ ba bán được ít hơn ngày thứ hai {less} {unit}. "
        f"Hỏi trung bình mỗi ngày cửa hàng bán được bao nhiêu {word} {good}?"
    )
    steps = (
        "Ngày thứ hai cửa hàng bán được:",
        _calc(f"{first} + {more}", _fmt(second), unit),
        "Ngày thứ ba cửa hàng bán được:",
        _calc(f"{second} - {less}", _fmt(third), unit),
        "Trung bình mỗi ngày cửa hàng bán được:",
        f"({first} + {second} + {third}) : 3 = {_fmt(total)} : 3 = {_fmt(total // 3)} ({unit})",
    )
    return Draft(question, steps, f"{_fmt(total // 3)} {unit}")


@_template("averages", GRADE_6)
def missing_value_for_average(rng: random.Random) -> Draft:
    """What the next value must be for a target mean: new total − old total."""
    name = rng.choice(NAMES)
    if rng.random() < 0.5:
        while True:
            k = rng.randint(2, 4)
            old, new = _tenths(rng, 60, 95), _tenths(rng, 60, 95)
            needed = new * (k + 1) - old * k
            if old != new and 5 <= needed <= 10:
                break
        question = (
            f"Điểm trung bình {k} bài kiểm tra đầu của {name} là {_fmt(old)} điểm. "
            f"Hỏi bài kiểm tra tiếp theo {name} phải được bao nhiêu điểm để điểm trung bình của cả {k + 1} bài "
            f"là {_fmt(new)} điểm?"
        )
        unit, labels = (
            "điểm",
            (
                f"Tổng số điểm của {k + 1} bài là:",
                f"Tổng số điểm của {k} bài đầu là:",
                f"Bài kiểm tra tiếp theo {name} phải được:",
            ),
        )
    else:
        while True:
            k = rng.choice((10, 11))
            old, coach = rng.randint(20, 27), rng.randint(35, 60)
            if (old * k + coach) % (k + 1) == 0:
                break
        new = Fraction(old * k + coach, k + 1)
        question = (
            f"Tuổi trung bình của {k} cầu thủ một đội bóng là {old} tuổi. Nếu tính cả huấn luyện viên thì "
            f"tuổi trung bình của cả đội là {_fmt(new)} tuổi. Hỏi huấn luyện viên bao nhiêu tuổi?"
        )
        unit, labels = (
            "tuổi",
            ("Tổng số tuổi của cả đội là:", f"Tổng số tuổi của {k} cầu thủ là:", "Tuổi của huấn luyện viên là:"),
        )
    new_total, old_total = new * (k + 1), old * k
    steps = (
        labels[0],
        _calc(f"{_fmt(new)} × {k + 1}", _fmt(new_total), unit),
        labels[1],
        _calc(f"{_fmt(old)} × {k}", _fmt(old_total), unit),
        labels[2],
        _calc(f"{_fmt(new_total)} - {_fmt(old_total)}", _fmt(new_total - old_total), unit),
    )
    return Draft(question, steps, f"{_fmt(new_total - old_total)} {unit}")


@_template("averages", GRADE_6)
def weighted_average(rng: random.Random) -> Draft:
    """Mean over two groups of different sizes (not the mean of the two means)."""
    workers = rng.random() < 0.5
    while True:
        a, b = (rng.randint(2, 12), rng.randint(2, 12)) if workers else (rng.randint(1, 5), rng.randint(1, 5))
        x, y = (rng.randint(20, 80), rng.randint(20, 80)) if workers else (rng.randint(30, 70), rng.randint(30, 70))
        if x != y and (a * x + b * y) % (a + b) == 0 and a != b:
            break
    total = a * x + b * y
    if workers:
        question = (
            f"Tổ Một có {a} công nhân, mỗi người làm được {x} sản phẩm. Tổ Hai có {b} công nhân, "
            f"mỗi người làm được {y} sản phẩm. Hỏi trung bình mỗi công nhân làm được bao nhiêu sản phẩm?"
        )
        unit, labels = "sản phẩm", ("Tổ Một làm được:", "Tổ Hai làm được:", "Trung bình mỗi công nhân làm được:")
    else:
        question = (
            f"Một ô tô trong {a} giờ đầu đi với vận tốc {x} km/giờ, trong {b} giờ sau đi với vận tốc {y} km/giờ. "
            f"Hỏi trung bình mỗi giờ ô tô đi được bao nhiêu ki-lô-mét?"
        )
        unit, labels = (
            "km",
            (
                f"Trong {a} giờ đầu ô tô đi được:",
                f"Trong {b} giờ sau ô tô đi được:",
                "Trung bình mỗi giờ ô tô đi được:",
            ),
        )
    steps = (
        labels[0],
        _calc(f"{x} × {a}", _fmt(a * x), unit),
        labels[1],
        _calc(f"{y} × {b}", _fmt(b * y), unit),
        labels[2],
        f"({_fmt(a * x)} + {_fmt(b * y)}) : ({a} + {b}) = {_fmt(total)} : {a + b} = {_fmt(total // (a + b))} ({unit})",
    )
    return Draft(question, steps, f"{_fmt(total // (a + b))} {unit}")


# =========================================================================== unit conversion

# (bigger unit, smaller unit, how many smaller units make one bigger unit)
_CONVERSIONS = (
    ("km", "m", 1000),
    ("m", "dm", 10),
    ("m", "cm", 100),
    ("dm", "cm", 10),
    ("cm", "mm", 10),
    ("m", "mm", 1000),
    ("tấn", "kg", 1000),
    ("tạ", "kg", 100),
    ("yến", "kg", 10),
    ("kg", "g", 1000),
    ("tấn", "tạ", 10),
    ("m²", "dm²", 100),
    ("dm²", "cm²", 100),
    ("ha", "m²", 10_000),
    ("km²", "ha", 100),
    ("m²", "cm²", 10_000),
    ("m³", "dm³", 1000),
    ("dm³", "cm³", 1000),
    ("giờ", "phút", 60),
    ("phút", "giây", 60),
    ("ngày", "giờ", 24),
    ("năm", "tháng", 12),
)

_FILL_IN = ("Viết số thích hợp vào chỗ chấm:", "Điền số thích hợp vào chỗ chấm:", "Đổi đơn vị:")


@_template("unit_conversion", GRADE_5)
def compound_to_one_unit(rng: random.Random) -> Draft:
    """``3 km 250 m = … m``."""
    big, small, factor = rng.choice(_CONVERSIONS)
    whole = rng.randint(1, 12 if factor <= 60 else 25)
    part = rng.randint(1, factor - 1)
    result = whole * factor + part
    question = f"{rng.choice(_FILL_IN)} {whole} {big} {_fmt(part)} {small} = ... {small}"
    steps = (
        f"Ta có: 1 {big} = {_fmt(factor)} {small}",
        f"{whole} {big} {_fmt(part)} {small} = {_fmt(whole * factor)} {small} + {_fmt(part)} {small} "
        f"= {_fmt(result)} {small}",
    )
    return Draft(question, steps, f"{_fmt(result)} {small}")


def _decimal_quantity(rng: random.Random, factor: int) -> tuple[int, Fraction]:
    """An amount in the smaller unit whose value in the bigger unit is a short, non-whole decimal."""
    while True:
        small = factor * rng.randint(0, 15) + rng.randint(1, factor - 1)
        big = Fraction(small, factor)
        if _places(big) <= (2 if factor <= 100 else 3):
            return small, big


@_template("unit_conversion", GRADE_5)
def to_bigger_unit(rng: random.Random) -> Draft:
    """``3.250 m = … km``: divide by the factor."""
    big, small, factor = rng.choice(_CONVERSIONS)
    amount, result = _decimal_quantity(rng, factor)
    question = f"{rng.choice(_FILL_IN)} {_fmt(amount)} {small} = ... {big}"
    steps = (
        f"Ta có: 1 {big} = {_fmt(factor)} {small}",
        _calc(f"{_fmt(amount)} : {_fmt(factor)}", _fmt(result)),
        f"Vậy: {_fmt(amount)} {small} = {_fmt(result)} {big}",
    )
    return Draft(question, steps, f"{_fmt(result)} {big}")


@_template("unit_conversion", GRADE_5)
def to_smaller_unit(rng: random.Random) -> Draft:
    """``2,5 giờ = … phút``: multiply by the factor."""
    big, small, factor = rng.choice(_CONVERSIONS)
    result, amount = _decimal_quantity(rng, factor)
    question = f"{rng.choice(_FILL_IN)} {_fmt(amount)} {big} = ... {small}"
    steps = (
        f"Ta có: 1 {big} = {_fmt(factor)} {small}",
        _calc(f"{_fmt(amount)} × {_fmt(factor)}", _fmt(result)),
        f"Vậy: {_fmt(amount)} {big} = {_fmt(result)} {small}",
    )
    return Draft(question, steps, f"{_fmt(result)} {small}")


@_template("unit_conversion", GRADE_6)
def convert_then_solve(rng: random.Random) -> Draft:
    """A word problem whose data come in different units."""
    form = rng.randrange(3)
    if form == 0:
        bag = rng.choice((25, 40, 50, 100))
        count = rng.randint(20, 200)
        kg = bag * count
        question = (
            f"Một xe tải chở {_fmt(Fraction(kg, 1000))} tấn gạo, mỗi bao gạo nặng {bag} kg. "
            f"Hỏi xe tải chở bao nhiêu bao gạo?"
        )
        steps = (
            f"Đổi: {_fmt(Fraction(kg, 1000))} tấn = {_fmt(kg)} kg",
            "Số bao gạo xe tải chở là:",
            _calc(f"{_fmt(kg)} : {bag}", _fmt(count), "bao"),
        )
        return Draft(question, steps, f"{_fmt(count)} bao")
    if form == 1:
        piece = rng.choice((15, 20, 25, 40, 50, 75))
        count = rng.randint(6, 120)
        cm = piece * count
        question = (
            f"Một cuộn dây dài {_fmt(Fraction(cm, 100))} m. Người ta cắt cuộn dây thành các đoạn, "
            f"mỗi đoạn dài {piece} cm. Hỏi cắt được bao nhiêu đoạn dây?"
        )
        steps = (
            f"Đổi: {_fmt(Fraction(cm, 100))} m = {_fmt(cm)} cm",
            "Số đoạn dây cắt được là:",
            _calc(f"{_fmt(cm)} : {piece}", _fmt(count), "đoạn"),
        )
        return Draft(question, steps, f"{_fmt(count)} đoạn")
    name = rng.choice(NAMES)
    while True:
        per_day, days = rng.randrange(15, 91, 5), rng.randint(4, 30)
        if (per_day * days) % 3 == 0:
            break
    minutes = per_day * days
    hours = Fraction(minutes, 60)
    question = f"Mỗi ngày {name} đọc sách {per_day} phút. Hỏi trong {days} ngày {name} đọc sách tất cả bao nhiêu giờ?"
    steps = (
        f"Trong {days} ngày {name} đọc sách số phút là:",
        _calc(f"{per_day} × {days}", _fmt(minutes), "phút"),
        f"Đổi: {_fmt(minutes)} phút = {_fmt(hours)} giờ",
    )
    return Draft(question, steps, f"{_fmt(hours)} giờ")


# =========================================================================== geometry


@_template("geometry", GRADE_6)
def rectangle_from_perimeter(rng: random.Random) -> Draft:
    """Half perimeter, then sum-and-difference for the sides, then the area."""
    thing, unit = rng.choice((("mảnh vườn", "m"), ("thửa ruộng", "m"), ("tấm bìa", "cm"), ("sân chơi", "m")))
    width = rng.randint(5, 60)
    difference = rng.randint(2, 40)
    length = width + difference
    half = length + width
    perimeter = 2 * half
    area = length * width
    question = (
        f"Một {thing} hình chữ nhật có chu vi {_fmt(perimeter)} {unit}, chiều dài hơn chiều rộng "
        f"{difference} {unit}. Tính diện tích {thing} đó."
    )
    steps = (
        f"Nửa chu vi {thing} là:",
        _calc(f"{_fmt(perimeter)} : 2", _fmt(half), unit),
        f"Chiều rộng {thing} là:",
        _calc(f"({_fmt(half)} - {difference}) : 2", _fmt(width), unit),
        f"Chiều dài {thing} là:",
        _calc(f"{width} + {difference}", _fmt(length), unit),
        f"Diện tích {thing} là:",
        _calc(f"{length} × {width}", _fmt(area), f"{unit}²"),
    )
    return Draft(question, steps, f"{_fmt(area)} {unit}²")


@_template("geometry", GRADE_5)
def triangle_area(rng: random.Random) -> Draft:
    """base × height : 2."""
    base = rng.choice((rng.randint(4, 60), _tenths(rng, 25, 300)))
    height = rng.randint(3, 50)
    area = base * height / 2
    unit = rng.choice(("cm", "dm", "m"))
    if rng.random() < 0.5:
        question = (
            f"Một hình tam giác có độ dài đáy {_fmt(base)} {unit}, chiều cao {height} {unit}. "
            f"Tính diện tích hình tam giác đó."
        )
    else:
        question = (
            f"Một hình tam giác vuông có hai cạnh góc vuông dài {_fmt(base)} {unit} và {height} {unit}. "
            f"Tính diện tích hình tam giác đó."
        )
    steps = ("Diện tích hình tam giác là:", _calc(f"{_fmt(base)} × {height} : 2", _fmt(area), f"{unit}²"))
    return Draft(question, steps, f"{_fmt(area)} {unit}²")


_ROUND_THINGS = (
    ("bồn hoa", "m"),
    ("mặt bàn", "dm"),
    ("sân khấu", "m"),
    ("tấm bìa", "cm"),
    ("miệng giếng", "dm"),
    ("chiếc gương", "dm"),
    ("chiếc đĩa", "cm"),
)


@_template("geometry", GRADE_5)
def circle_area(rng: random.Random) -> Draft:
    """r × r × 3,14 (from the radius or the diameter)."""
    thing, unit = rng.choice(_ROUND_THINGS)
    radius = Fraction(rng.randint(2, 60), 2)
    area = radius * radius * PI
    if rng.random() < 0.5:
        question = f"Một {thing} hình tròn có bán kính {_fmt(radius)} {unit}. Tính diện tích {thing} đó."
        steps: tuple[str, ...] = ()
    else:
        question = f"Một {thing} hình tròn có đường kính {_fmt(2 * radius)} {unit}. Tính diện tích {thing} đó."
        steps = (f"Bán kính {thing} là:", _calc(f"{_fmt(2 * radius)} : 2", _fmt(radius), unit))
    steps += (f"Diện tích {thing} là:", _calc(f"{_fmt(radius)} × {_fmt(radius)} × 3,14", _fmt(area), f"{unit}²"))
    return Draft(question, steps, f"{_fmt(area)} {unit}²")


@_template("geometry", GRADE_5)
def circle_circumference(rng: random.Random) -> Draft:
    """d × 3,14, or r × 2 × 3,14; and a wheel rolling n turns."""
    form = rng.randrange(3)
    if form == 1:
        thing, unit = rng.choice(_ROUND_THINGS)
        radius = _tenths(rng, 5, 150)
        length = radius * 2 * PI
        question = f"Một {thing} hình tròn có bán kính {_fmt(radius)} {unit}. Tính chu vi {thing} đó."
        steps = (f"Chu vi {thing} là:", _calc(f"{_fmt(radius)} × 2 × 3,14", _fmt(length), unit))
        return Draft(question, steps, f"{_fmt(length)} {unit}")
    diameter = _tenths(rng, 3, 20) if form == 2 else _tenths(rng, 5, 300)
    length = diameter * PI
    if form == 0:
        thing, unit = rng.choice(_ROUND_THINGS)
        question = f"Một {thing} hình tròn có đường kính {_fmt(diameter)} {unit}. Tính chu vi {thing} đó."
        steps = (f"Chu vi {thing} là:", _calc(f"{_fmt(diameter)} × 3,14", _fmt(length), unit))
        return Draft(question, steps, f"{_fmt(length)} {unit}")
    turns = rng.choice((10, 20, 25, 50, 100, 200, 500, 1000))
    question = (
        f"Một bánh xe có đường kính {_fmt(diameter)} m. Hỏi khi bánh xe lăn trên mặt đất được {_fmt(turns)} vòng "
        f"thì xe đi được bao nhiêu mét?"
    )
    steps = (
        "Chu vi bánh xe là:",
        _calc(f"{_fmt(diameter)} × 3,14", _fmt(length), "m"),
        "Quãng đường xe đi được là:",
        _calc(f"{_fmt(length)} × {_fmt(turns)}", _fmt(length * turns), "m"),
    )
    return Draft(question, steps, f"{_fmt(length * turns)} m")


@_template("geometry", GRADE_5)
def tank_volume_in_litres(rng: random.Random) -> Draft:
    """Box volume in m³, then 1 dm³ = 1 lít."""
    thing = rng.choice(("bể nước", "bể bơi mini", "thùng chứa nước", "bể cá"))
    a, b, c = _tenths(rng, 10, 40), _tenths(rng, 8, 30), _tenths(rng, 5, 20)
    volume = a * b * c
    litres = volume * 1000
    question = (
        f"Một {thing} dạng hình hộp chữ nhật có chiều dài {_fmt(a)} m, chiều rộng {_fmt(b)} m, chiều cao {_fmt(c)} m. "
        f"Hỏi {thing} đó chứa được bao nhiêu lít nước khi đầy?"
    )
    steps = (
        f"Thể tích {thing} là:",
        _calc(f"{_fmt(a)} × {_fmt(b)} × {_fmt(c)}", _fmt(volume), "m³"),
        f"Đổi: {_fmt(volume)} m³ = {_fmt(litres)} dm³ = {_fmt(litres)} lít",
    )
    return Draft(question, steps, f"{_fmt(litres)} lít")


@_template("geometry", GRADE_5)
def cube_measures(rng: random.Random) -> Draft:
    """Volume, total or lateral area of a cube."""
    thing = rng.choice(("khối gỗ", "cái hộp", "khối rubik", "bể kính"))
    edge = rng.choice((rng.randint(2, 30), _tenths(rng, 12, 99)))
    unit = rng.choice(("cm", "dm"))
    kind = rng.randrange(3)
    face = edge * edge
    if kind == 0:
        asked, steps = (
            "thể tích",
            (
                f"Thể tích {thing} là:",
                _calc(f"{_fmt(edge)} × {_fmt(edge)} × {_fmt(edge)}", _fmt(face * edge), f"{unit}³"),
            ),
        )
        result, area_unit = face * edge, f"{unit}³"
    else:
        faces = 6 if kind == 1 else 4
        asked = "diện tích toàn phần" if kind == 1 else "diện tích xung quanh"
        steps = (
            "Diện tích một mặt là:",
            _calc(f"{_fmt(edge)} × {_fmt(edge)}", _fmt(face), f"{unit}²"),
            f"{_cap(asked)} {thing} là:",
            _calc(f"{_fmt(face)} × {faces}", _fmt(face * faces), f"{unit}²"),
        )
        result, area_unit = face * faces, f"{unit}²"
    question = f"Một {thing} hình lập phương có cạnh {_fmt(edge)} {unit}. Tính {asked} {thing} đó."
    return Draft(question, steps, f"{_fmt(result)} {area_unit}")


@_template("geometry", GRADE_5)
def trapezoid_harvest(rng: random.Random) -> Draft:
    """Trapezoid area, then a yield per 100 m²."""
    while True:
        small = rng.randint(10, 80)
        big = small + rng.randint(5, 40)
        height = rng.randint(10, 60)
        per_100 = rng.randint(45, 80)
        area = Fraction((big + small) * height, 2)
        if area.denominator == 1 and (area * per_100) % 10 == 0:
            break
    crop = rng.choice(("thóc", "ngô", "khoai"))
    harvest = area / 100 * per_100
    question = (
        f"Một thửa ruộng hình thang có đáy lớn {big} m, đáy bé {small} m, chiều cao {height} m. "
        f"Trung bình cứ 100 m² thu hoạch được {per_100} kg {crop}. "
        f"Hỏi trên cả thửa ruộng đó thu hoạch được bao nhiêu ki-lô-gam {crop}?"
    )
    steps = (
        "Diện tích thửa ruộng là:",
        _calc(f"({big} + {small}) × {height} : 2", _fmt(area), "m²"),
        f"Số {crop} thu hoạch được là:",
        _calc(f"{_fmt(area)} : 100 × {per_100}", _fmt(harvest), "kg"),
    )
    return Draft(question, steps, f"{_fmt(harvest)} kg")


@_template("geometry", GRADE_6)
def quadrilateral_area(rng: random.Random) -> Draft:
    """Square from its perimeter, rhombus from its diagonals, parallelogram from base and height."""
    unit = rng.choice(("cm", "dm", "m"))
    form = rng.randrange(3)
    if form == 0:
        side = rng.randint(3, 60)
        question = f"Một hình vuông có chu vi {4 * side} {unit}. Tính diện tích hình vuông đó."
        steps = (
            "Độ dài cạnh hình vuông là:",
            _calc(f"{4 * side} : 4", _fmt(side), unit),
            "Diện tích hình vuông là:",
            _calc(f"{side} × {side}", _fmt(side * side), f"{unit}²"),
        )
        result = Fraction(side * side)
    elif form == 1:
        d1, d2 = rng.randint(4, 60), rng.randint(4, 60)
        result = Fraction(d1 * d2, 2)
        question = f"Một hình thoi có độ dài hai đường chéo là {d1} {unit} và {d2} {unit}. Tính diện tích hình thoi đó."
        steps = ("Diện tích hình thoi là:", _calc(f"{d1} × {d2} : 2", _fmt(result), f"{unit}²"))
    else:
        base, height = rng.randint(5, 80), rng.randint(3, 50)
        result = Fraction(base * height)
        question = (
            f"Một hình bình hành có độ dài đáy {base} {unit}, chiều cao {height} {unit}. "
            f"Tính diện tích hình bình hành đó."
        )
        steps = ("Diện tích hình bình hành là:", _calc(f"{base} × {height}", _fmt(result), f"{unit}²"))
    return Draft(question, steps, f"{_fmt(result)} {unit}²")


# =========================================================================== motion

_VEHICLES = (
    ("ô tô", 35, 70),
    ("xe máy", 25, 45),
    ("người đi xe đạp", 10, 18),
    ("tàu hoả", 40, 80),
    ("xe khách", 40, 65),
)


def _clock(hours: int, minutes: int) -> str:
    """``7 giờ 15 phút`` (or ``7 giờ``)."""
    return f"{hours} giờ {minutes} phút" if minutes else f"{hours} giờ"


@_template("motion", GRADE_5)
def speed_from_distance_time(rng: random.Random) -> Draft:
    """v = s : t, with the time given in hours and minutes."""
    vehicle, low, high = rng.choice(_VEHICLES)
    speed = rng.randint(low, high)
    hours = rng.randint(1, 4)
    minutes = rng.choice((12, 15, 18, 24, 30, 36, 45, 48))
    time = hours + Fraction(minutes, 60)
    distance = speed * time
    question = (
        f"Một {vehicle} đi quãng đường dài {_fmt(distance)} km hết {_clock(hours, minutes)}. "
        f"Tính vận tốc của {vehicle} đó."
    )
    steps = (
        f"Đổi: {_clock(hours, minutes)} = {_fmt(time)} giờ",
        f"Vận tốc của {vehicle} là:",
        _calc(f"{_fmt(distance)} : {_fmt(time)}", _fmt(speed), "km/giờ"),
    )
    return Draft(question, steps, f"{_fmt(speed)} km/giờ")


@_template("motion", GRADE_5)
def distance_from_clock_times(rng: random.Random) -> Draft:
    """Elapsed time from departure/arrival clock times (minus a rest), then s = v × t."""
    vehicle, low, high = rng.choice(_VEHICLES)
    speed = rng.randint(low, high)
    while True:
        start_h, start_m = rng.randint(5, 10), rng.randrange(5, 56, 5)
        travel = rng.choice((60, 75, 90, 105, 120, 135, 150, 165, 180, 210, 240))
        rest = rng.choice((0, 0, 15, 20, 30))
        end = start_h * 60 + start_m + travel + rest
        if end % 60:
            break
    end_h, end_m = divmod(end, 60)
    time = Fraction(travel, 60)
    distance = speed * time
    travel_clock = _clock(*divmod(travel, 60))
    rest_text = f", dọc đường nghỉ {rest} phút" if rest else ""
    question = (
        f"Một {vehicle} khởi hành từ A lúc {_clock(start_h, start_m)} và đến B lúc {_clock(end_h, end_m)}"
        f"{rest_text}. Biết vận tốc của {vehicle} là {speed} km/giờ, tính quãng đường AB."
    )
    elapsed = f"{_clock(end_h, end_m)} - {_clock(start_h, start_m)}" + (f" - {rest} phút" if rest else "")
    steps: tuple[str, ...] = (f"Thời gian {vehicle} đi trên đường là:", f"{elapsed} = {travel_clock}")
    if travel % 60:
        steps += (f"Đổi: {travel_clock} = {_fmt(time)} giờ",)
    steps += ("Quãng đường AB dài là:", _calc(f"{speed} × {_fmt(time)}", _fmt(distance), "km"))
    return Draft(question, steps, f"{_fmt(distance)} km")


_MEETING_TIMES = tuple(Fraction(k, 4) for k in range(3, 17)) + (Fraction(6, 5), Fraction(9, 5), Fraction(12, 5))


@_template("motion", GRADE_5)
def meeting_time(rng: random.Random) -> Draft:
    """Two vehicles towards each other: t = s : (v1 + v2)."""
    (first, low1, high1), (second, low2, high2) = rng.sample(_VEHICLES[:3] + _VEHICLES[4:], 2)
    while True:
        v1, v2 = rng.randint(low1, high1), rng.randint(low2, high2)
        time = rng.choice(_MEETING_TIMES)
        distance = (v1 + v2) * time
        if distance.denominator == 1:
            break
    question = (
        f"Quãng đường AB dài {_fmt(distance)} km. Cùng một lúc, một {first} đi từ A về B với vận tốc {v1} km/giờ "
        f"và một {second} đi từ B về A với vận tốc {v2} km/giờ. Hỏi sau bao lâu hai xe gặp nhau?"
    )
    steps = (
        "Sau mỗi giờ, cả hai xe đi được:",
        _calc(f"{v1} + {v2}", _fmt(v1 + v2), "km"),
        "Thời gian để hai xe gặp nhau là:",
        _calc(f"{_fmt(distance)} : {v1 + v2}", _fmt(time), "giờ"),
    )
    return Draft(question, steps, f"{_fmt(time)} giờ")


_CHASED = (("người đi xe đạp", "xe đạp", 10, 18), ("người đi bộ", "người đi bộ", 4, 6))
_CHASERS = (("người đi xe máy", "xe máy", 28, 50), ("ô tô", "ô tô", 40, 60))
_DELAYS = (Fraction(1, 2), Fraction(3, 4), 1, Fraction(5, 4), Fraction(3, 2), 2, Fraction(5, 2), 3)


@_template("motion", GRADE_6)
def catching_up(rng: random.Random) -> Draft:
    """Same direction: head start distance : difference of speeds."""
    (slow_who, slow_name, slow_low, slow_high), (fast_who, fast_name, fast_low, fast_high) = (
        rng.choice(_CHASED),
        rng.choice(_CHASERS),
    )
    while True:
        slow, fast = rng.randint(slow_low, slow_high), rng.randint(fast_low, fast_high)
        delay = rng.choice(_DELAYS)
        head = slow * delay
        time = head / (fast - slow)
        if _places(time) <= 2 and _places(head) <= 2:
            break
    question = (
        f"Một {slow_who} đi từ A với vận tốc {slow} km/giờ. Sau {_fmt(delay)} giờ, một {fast_who} cũng "
        f"đi từ A đuổi theo với vận tốc {fast} km/giờ. Hỏi kể từ lúc {fast_name} bắt đầu đi, sau bao lâu thì "
        f"{fast_name} đuổi kịp {slow_name}?"
    )
    steps = (
        f"Khi {fast_name} bắt đầu đi, {slow_name} đã đi được:",
        _calc(f"{slow} × {_fmt(delay)}", _fmt(head), "km"),
        f"Mỗi giờ {fast_name} đi nhanh hơn {slow_name}:",
        _calc(f"{fast} - {slow}", _fmt(fast - slow), "km"),
        f"Thời gian để {fast_name} đuổi kịp {slow_name} là:",
        _calc(f"{_fmt(head)} : {fast - slow}", _fmt(time), "giờ"),
    )
    return Draft(question, steps, f"{_fmt(time)} giờ")


@_template("motion", GRADE_6)
def boat_on_river(rng: random.Random) -> Draft:
    """Downstream speed is v + u, upstream v - u."""
    boat = rng.choice(("ca nô", "thuyền máy", "tàu thuỷ"))
    downstream = rng.random() < 0.5
    while True:
        still, current = rng.randint(15, 35), rng.randint(2, 6)
        speed = still + current if downstream else still - current
        time = rng.choice(_MEETING_TIMES)
        distance = speed * time
        if _places(distance) <= 1:
            break
    word, op = ("xuôi", "+") if downstream else ("ngược", "-")
    question = (
        f"Một {boat} đi {word} dòng một quãng sông dài {_fmt(distance)} km. Biết vận tốc của {boat} khi nước lặng "
        f"là {still} km/giờ và vận tốc dòng nước là {current} km/giờ. Hỏi {boat} đi hết quãng sông đó trong bao lâu?"
    )
    steps = (
        f"Vận tốc {boat} khi {word} dòng là:",
        _calc(f"{still} {op} {current}", _fmt(speed), "km/giờ"),
        f"Thời gian {boat} đi hết quãng sông là:",
        _calc(f"{_fmt(distance)} : {speed}", _fmt(time), "giờ"),
    )
    return Draft(question, steps, f"{_fmt(time)} giờ")


# =========================================================================== ages

# (elder relative, pair word, age gap range, younger's age range)
_ELDERS = (
    ("mẹ", "mẹ con", (20, 35), (3, 16)),
    ("bố", "bố con", (22, 40), (3, 16)),
    ("ông", "ông cháu", (48, 65), (4, 15)),
    ("bà", "bà cháu", (45, 62), (4, 15)),
)
_SIBLINGS = (("chị", "chị em", (2, 9), (3, 12)), ("anh", "anh em", (2, 9), (3, 12)))


@_template("ages", GRADE_5)
def ages_sum_difference(rng: random.Random) -> Draft:
    """Sum and difference: (S - D) : 2 or (S + D) : 2."""
    elder, pair, (gap_low, gap_high), (young_low, young_high) = rng.choice(_ELDERS + _SIBLINGS)
    name = rng.choice(NAMES)
    young = rng.randint(young_low, young_high)
    gap = rng.randint(gap_low, gap_high)
    old = young + gap
    total = young + old
    ask_young = rng.random() < 0.5
    asked = name if ask_young else elder
    if rng.random() < 0.5:
        question = (
            f"Tổng số tuổi của {elder} và {name} là {total} tuổi. {_cap(elder)} hơn {name} {gap} tuổi. "
            f"Tính tuổi của {asked}."
        )
    else:
        question = (
            f"Hiện nay {elder} hơn {name} {gap} tuổi và tổng số tuổi của hai {pair} là {total} tuổi. "
            f"Hỏi {asked} bao nhiêu tuổi?"
        )
    if ask_young:
        steps = (f"Tuổi của {name} là:", _calc(f"({total} - {gap}) : 2", _fmt(young), "tuổi"))
    else:
        steps = (f"Tuổi của {elder} là:", _calc(f"({total} + {gap}) : 2", _fmt(old), "tuổi"))
    return Draft(question, steps, f"{young if ask_young else old} tuổi")


_AGE_RATIOS = tuple(
    Fraction(a, b)
    for a, b in (
        (1, 3),
        (1, 4),
        (1, 5),
        (1, 6),
        (1, 7),
        (1, 8),
        (1, 9),
        (2, 7),
        (2, 9),
        (3, 10),
        (2, 11),
        (3, 11),
        (1, 10),
    )
)


@_template("ages", GRADE_5)
def ages_difference_ratio(rng: random.Random) -> Draft:
    """Difference and ratio; the gap stays the same every year."""
    elder, _, (gap_low, gap_high), _ = rng.choice(_ELDERS)
    while True:
        f = rng.choice(_AGE_RATIOS)
        a, b = f.numerator, f.denominator
        gap = rng.randint(gap_low, gap_high)
        if gap % (b - a) == 0 and gap // (b - a) * a >= 2 and gap // (b - a) * b <= 90:
            break
    one = gap // (b - a)
    young, old = one * a, one * b
    name = rng.choice(NAMES)
    ask_young = rng.random() < 0.6
    asked = name if ask_young else elder
    question = (
        f"{_cap(elder)} hơn {name} {gap} tuổi. Tuổi của {name} bằng {_frac(f)} tuổi của {elder}. "
        f"Tính tuổi của {asked} hiện nay."
    )
    steps = (
        "Hiệu số phần bằng nhau là:",
        _calc(f"{b} - {a}", _fmt(b - a), "phần"),
        f"Tuổi của {asked} hiện nay là:",
        _calc(f"{gap} : {b - a} × {a if ask_young else b}", _fmt(young if ask_young else old), "tuổi"),
    )
    return Draft(question, steps, f"{young if ask_young else old} tuổi")


@_template("ages", GRADE_6)
def years_until_multiple(rng: random.Random) -> Draft:
    """When will the elder be k times as old? The gap is fixed, so the younger is then gap : (k - 1)."""
    elder, _, (gap_low, gap_high), _ = rng.choice(_ELDERS)
    while True:
        k = rng.randint(2, 5)
        gap = rng.randint(gap_low, gap_high)
        if gap % (k - 1):
            continue
        young_then = gap // (k - 1)
        years = rng.randint(1, 15)
        young = young_then - years
        if 2 <= young <= 16 and young + gap <= 85:
            break
    old = young + gap
    name = rng.choice(NAMES)
    question = (
        f"Năm nay {elder} {old} tuổi, {name} {young} tuổi. "
        f"Hỏi sau bao nhiêu năm nữa thì tuổi {elder} gấp {k} lần tuổi {name}?"
    )
    steps = (
        f"{_cap(elder)} hơn {name} số tuổi là:",
        _calc(f"{old} - {young}", _fmt(gap), "tuổi"),
        f"Khi tuổi {elder} gấp {k} lần tuổi {name} thì hiệu số phần bằng nhau là:",
        _calc(f"{k} - 1", _fmt(k - 1), "phần"),
        f"Tuổi của {name} lúc đó là:",
        _calc(f"{gap} : {k - 1}", _fmt(young_then), "tuổi"),
        "Số năm cần tìm là:",
        _calc(f"{young_then} - {young}", _fmt(years), "năm"),
    )
    return Draft(question, steps, f"{years} năm")


@_template("ages", GRADE_6)
def ages_from_future_sum(rng: random.Random) -> Draft:
    """Future total minus 2 × years gives today's total, then sum and ratio."""
    elder, pair, (gap_low, gap_high), _ = rng.choice(_ELDERS)
    while True:
        young, k = rng.randint(3, 16), rng.randint(2, 8)
        if gap_low <= (k - 1) * young <= gap_high:
            break
    years = rng.randint(2, 10)
    total_then = (k + 1) * young + 2 * years
    now_total = (k + 1) * young
    name = rng.choice(NAMES)
    question = (
        f"Năm nay tuổi {elder} gấp {k} lần tuổi {name}. Sau {years} năm nữa, tổng số tuổi của hai {pair} "
        f"là {total_then} tuổi. Tính tuổi của {name} hiện nay."
    )
    steps = (
        f"Tổng số tuổi của hai {pair} hiện nay là:",
        _calc(f"{total_then} - {years} × 2", _fmt(now_total), "tuổi"),
        "Tổng số phần bằng nhau là:",
        _calc(f"{k} + 1", _fmt(k + 1), "phần"),
        f"Tuổi của {name} hiện nay là:",
        _calc(f"{now_total} : {k + 1}", _fmt(young), "tuổi"),
    )
    return Draft(question, steps, f"{young} tuổi")


# =========================================================================== work rates


@_template("work_rates", GRADE_5)
def more_workers_fewer_days(rng: random.Random) -> Draft:
    """Inverse proportion through 'how many for one day'."""
    while True:
        people, days = rng.randint(5, 40), rng.randint(4, 30)
        work = people * days
        options = [m for m in range(3, 81) if work % m == 0 and m != people and work // m >= 2]
        if options:
            break
    others = rng.choice(options)
    result = work // others
    if rng.random() < 0.5:
        verb, thing = rng.choice(
            (("làm xong", "đoạn đường"), ("xây xong", "ngôi nhà"), ("đắp xong", "con đê"), ("gặt xong", "cánh đồng"))
        )
        question = (
            f"Một đội {people} công nhân {verb} một {thing} trong {days} ngày. Hỏi nếu đội có {others} công nhân "
            f"(năng suất mỗi người như nhau) thì {verb} {thing} đó trong bao nhiêu ngày?"
        )
        steps = (
            f"Muốn {verb} {thing} đó trong 1 ngày thì cần số công nhân là:",
            _calc(f"{people} × {days}", _fmt(work), "công nhân"),
            f"{others} công nhân {verb} {thing} đó trong số ngày là:",
            _calc(f"{_fmt(work)} : {others}", _fmt(result), "ngày"),
        )
    else:
        question = (
            f"Một bếp ăn dự trữ gạo đủ cho {people} người ăn trong {days} ngày. Nếu có {others} người ăn "
            f"(mức ăn của mỗi người như nhau) thì số gạo đó đủ ăn trong bao nhiêu ngày?"
        )
        steps = (
            "Số gạo đó đủ cho 1 người ăn trong số ngày là:",
            _calc(f"{days} × {people}", _fmt(work), "ngày"),
            f"Số gạo đó đủ cho {others} người ăn trong số ngày là:",
            _calc(f"{_fmt(work)} : {others}", _fmt(result), "ngày"),
        )
    return Draft(question, steps, f"{_fmt(result)} ngày")


_PRODUCTIVITY = (
    (
        "Một xưởng may trong {D} ngày may được {X} bộ quần áo. Hỏi với năng suất như vậy, trong {E} ngày xưởng may "
        "được bao nhiêu bộ quần áo?",
        "bộ quần áo",
        "ngày",
        "xưởng may được",
    ),
    (
        "Một máy bơm trong {D} giờ bơm được {X} m³ nước. Hỏi với năng suất như vậy, trong {E} giờ máy bơm đó bơm "
        "được bao nhiêu mét khối nước?",
        "m³",
        "giờ",
        "máy bơm được",
    ),
    (
        "Một máy in trong {D} phút in được {X} trang. Hỏi với năng suất như vậy, trong {E} phút máy đó in được "
        "bao nhiêu trang?",
        "trang",
        "phút",
        "máy in được",
    ),
    (
        "Một tổ công nhân trong {D} ngày làm được {X} sản phẩm. Hỏi với năng suất như vậy, trong {E} ngày tổ làm "
        "được bao nhiêu sản phẩm?",
        "sản phẩm",
        "ngày",
        "tổ làm được",
    ),
)


@_template("work_rates", GRADE_5)
def same_rate_longer_time(rng: random.Random) -> Draft:
    """Direct proportion through the amount per unit of time."""
    text, unit, period, verb = rng.choice(_PRODUCTIVITY)
    per = rng.randint(12, 250)
    d, e = rng.sample(range(2, 16), 2)
    done = per * d
    question = text.format(D=d, X=_fmt(done), E=e)
    steps = (
        f"Trong 1 {period} {verb}:",
        _calc(f"{_fmt(done)} : {d}", _fmt(per), unit),
        f"Trong {e} {period} {verb}:",
        _calc(f"{per} × {e}", _fmt(per * e), unit),
    )
    return Draft(question, steps, f"{_fmt(per * e)} {unit}")


# Pairs (a, b) of solo times whose joint time a × b : (a + b) is a short decimal.
_JOINT_PAIRS = tuple((a, b) for a in range(2, 16) for b in range(a + 1, 25) if _places(Fraction(a * b, a + b)) <= 2)

# (first worker, second worker, job, the whole, time unit, both, acting together, done, verb)
_JOINT_JOBS = (
    ("vòi thứ nhất", "vòi thứ hai", "chảy đầy bể", "bể", "giờ", "cả hai vòi", "cùng chảy", "bể đầy", "chảy được"),
    (
        "anh {male}",
        "chị {female}",
        "làm một mình xong công việc",
        "công việc",
        "giờ",
        "hai người",
        "cùng làm",
        "xong công việc",
        "làm được",
    ),
    (
        "máy cày thứ nhất",
        "máy cày thứ hai",
        "cày xong cánh đồng",
        "cánh đồng",
        "ngày",
        "cả hai máy",
        "cùng cày",
        "cày xong cánh đồng",
        "cày được",
    ),
)


def _joint_setup(rng: random.Random) -> tuple[tuple[str, ...], int, int]:
    """A job, its two workers (names filled in) and their solo times a, b."""
    first, second, *rest = rng.choice(_JOINT_JOBS)
    names = {"male": rng.choice(MALE_NAMES), "female": rng.choice(FEMALE_NAMES)}
    a, b = rng.choice(_JOINT_PAIRS)
    if rng.random() < 0.5:
        a, b = b, a
    return (first.format(**names), second.format(**names), *rest), a, b


@_template("work_rates", GRADE_6)
def working_together(rng: random.Random) -> Draft:
    """Add the parts done in one unit of time, then 1 : that fraction."""
    (first, second, job, whole, period, both, act, done, verb), a, b = _joint_setup(rng)
    rate = Fraction(1, a) + Fraction(1, b)
    time = 1 / rate
    question = (
        f"{_cap(first)} {job} trong {a} {period}, {second} {job} trong {b} {period}. "
        f"Hỏi nếu {both} {act} thì sau bao lâu {done}?"
    )
    steps = (
        f"Trong 1 {period}, {first} {verb}:",
        _calc(f"1 : {a}", f"1/{a}", whole),
        f"Trong 1 {period}, {second} {verb}:",
        _calc(f"1 : {b}", f"1/{b}", whole),
        f"Trong 1 {period}, {both} {verb}:",
        f"{_fraction_chain(Fraction(1, a), Fraction(1, b), '+')} ({whole})",
        "Thời gian cần tìm là:",
        _calc(f"1 : {_frac(rate)}", _fmt(time), period),
    )
    return Draft(question, steps, f"{_fmt(time)} {period}")


@_template("work_rates", GRADE_6)
def one_of_two_workers(rng: random.Random) -> Draft:
    """Joint rate minus one worker's rate gives the other's."""
    (first, second, job, whole, period, both, act, done, verb), a, b = _joint_setup(rng)
    joint = Fraction(a * b, a + b)
    joint_rate = 1 / joint
    question = (
        f"Nếu {both} {act} thì sau {_fmt(joint)} {period} {done}. Riêng {first} {job} trong {a} {period}. "
        f"Hỏi riêng {second} {job} trong bao lâu?"
    )
    steps = (
        f"Trong 1 {period}, {both} {verb}:",
        _calc(f"1 : {_fmt(joint)}", _frac(joint_rate), whole),
        f"Trong 1 {period}, {first} {verb}:",
        _calc(f"1 : {a}", f"1/{a}", whole),
        f"Trong 1 {period}, {second} {verb}:",
        f"{_fraction_chain(joint_rate, Fraction(1, a), '-')} ({whole})",
        "Thời gian cần tìm là:",
        _calc(f"1 : 1/{b}", _fmt(b), period),
    )
    return Draft(question, steps, f"{_fmt(b)} {period}")


@_template("work_rates", GRADE_6)
def reinforcements(rng: random.Random) -> Draft:
    """Extra workers join midway: the remaining work in 'worker-days' : the new team size."""
    while True:
        people, extra = rng.randint(8, 40), rng.randint(2, 30)
        planned, done_days = rng.randint(10, 40), rng.randint(2, 15)
        remaining = planned - done_days
        if remaining >= 3 and (people * remaining) % (people + extra) == 0:
            break
    work = people * remaining
    team = people + extra
    actual = work // team
    question = (
        f"Một đội công nhân có {people} người, dự định làm xong một công trình trong {planned} ngày. "
        f"Sau khi làm được {done_days} ngày, đội được bổ sung thêm {extra} người. "
        f"Hỏi đội đã hoàn thành công trình sớm hơn dự định bao nhiêu ngày? (Năng suất mỗi người như nhau.)"
    )
    steps = (
        "Nếu không thêm người, đội còn phải làm số ngày là:",
        _calc(f"{planned} - {done_days}", _fmt(remaining), "ngày"),
        "Muốn làm xong phần việc còn lại trong 1 ngày thì cần số người là:",
        _calc(f"{people} × {remaining}", _fmt(work), "người"),
        "Số người của đội sau khi bổ sung là:",
        _calc(f"{people} + {extra}", _fmt(team), "người"),
        "Thời gian làm xong phần việc còn lại là:",
        _calc(f"{_fmt(work)} : {team}", _fmt(actual), "ngày"),
        "Đội hoàn thành sớm hơn dự định số ngày là:",
        _calc(f"{remaining} - {actual}", _fmt(remaining - actual), "ngày"),
    )
    return Draft(question, steps, f"{_fmt(remaining - actual)} ngày")


# =========================================================================== money

_BY_WEIGHT = (("gạo", 16, 30), ("đường", 20, 28), ("táo", 35, 70), ("cam", 25, 50), ("cá", 60, 110))
_BY_PIECE = (
    ("quả trứng", "quả", 3000, 5000, 500),
    ("quyển vở", "quyển", 6000, 15000, 1000),
    ("chiếc bút bi", "chiếc", 3000, 8000, 500),
    ("hộp sữa", "hộp", 6000, 12000, 500),
)


@_template("money", GRADE_5)
def shopping_change(rng: random.Random) -> Draft:
    """Price × quantity for two goods, then change from a banknote."""
    buyer = rng.choice((("Mẹ", "mẹ"), ("Cô {name}", "cô {name}"), ("Bác {name}", "bác {name}")))
    name = rng.choice(FEMALE_NAMES if buyer[0].startswith("Cô") else NAMES)
    buyer_subject, buyer_object = (b.format(name=name) for b in buyer)
    while True:
        good, low, high = rng.choice(_BY_WEIGHT)
        kg = rng.choice((1, Fraction(3, 2), 2, Fraction(5, 2), 3, Fraction(1, 2)))
        price = 1000 * rng.randint(low, high)
        item, unit, p_low, p_high, p_step = rng.choice(_BY_PIECE)
        count = rng.randint(2, 12)
        piece_price = rng.randrange(p_low, p_high + 1, p_step)
        cost1, cost2 = kg * price, count * piece_price
        total = cost1 + cost2
        notes = [note for note in (100_000, 200_000, 500_000) if note >= total]
        if notes:
            break
    note = rng.choice(notes[:2])
    change = note - total
    question = (
        f"{buyer_subject} mua {_fmt(kg)} kg {good} với giá {_fmt(price)} đồng một ki-lô-gam và {count} {item} "
        f"với giá {_fmt(piece_price)} đồng một {unit}. {buyer_subject} đưa cho người bán hàng tờ tiền "
        f"{_fmt(note)} đồng. Hỏi người bán hàng phải trả lại {buyer_object} bao nhiêu tiền?"
    )
    steps = (
        f"Số tiền mua {good} là:",
        _calc(f"{_fmt(price)} × {_fmt(kg)}", _fmt(cost1), "đồng"),
        f"Số tiền mua {item} là:",
        _calc(f"{_fmt(piece_price)} × {count}", _fmt(cost2), "đồng"),
        f"{buyer_subject} phải trả tất cả là:",
        _calc(f"{_fmt(cost1)} + {_fmt(cost2)}", _fmt(total), "đồng"),
        f"Người bán hàng phải trả lại {buyer_object} là:",
        _calc(f"{_fmt(note)} - {_fmt(total)}", _fmt(change), "đồng"),
    )
    return Draft(question, steps, f"{_fmt(change)} đồng")


_PRICED_ITEMS = (
    ("chiếc xe đạp", 1_200, 4_000, 50),
    ("chiếc quạt điện", 300, 900, 10),
    ("chiếc cặp sách", 150, 450, 5),
    ("đôi giày", 200, 800, 10),
    ("chiếc nồi cơm điện", 500, 1_500, 50),
    ("bộ đồ chơi", 120, 600, 10),
)


@_template("money", GRADE_5)
def discounted_price(rng: random.Random) -> Draft:
    """Discount = price × p : 100; new price = price − discount."""
    item, low, high, step = rng.choice(_PRICED_ITEMS)
    price = 1000 * rng.randrange(low, high + 1, step)
    p = rng.choice((5, 10, 15, 20, 25, 30, 40))
    discount = price * p // 100
    occasion = rng.choice(("Nhân dịp khai trương", "Trong đợt khuyến mãi", "Nhân dịp cuối năm"))
    question = (
        f"Một {item} giá {_fmt(price)} đồng. {occasion}, cửa hàng giảm giá {_pct(p)}. "
        f"Hỏi sau khi giảm giá, {item} đó còn bao nhiêu tiền?"
    )
    steps = (
        "Số tiền được giảm là:",
        _calc(f"{_fmt(price)} × {p} : 100", _fmt(discount), "đồng"),
        f"Giá của {item} sau khi giảm là:",
        _calc(f"{_fmt(price)} - {_fmt(discount)}", _fmt(price - discount), "đồng"),
    )
    return Draft(question, steps, f"{_fmt(price - discount)} đồng")


@_template("money", GRADE_5)
def savings_interest(rng: random.Random) -> Draft:
    """One month of interest at r% a month (and the total with the deposit)."""
    name = rng.choice(NAMES)
    deposit = 1_000_000 * rng.randint(5, 200)
    rate = rng.choice(
        (
            Fraction(4, 10),
            Fraction(45, 100),
            Fraction(5, 10),
            Fraction(55, 100),
            Fraction(6, 10),
            Fraction(65, 100),
            Fraction(7, 10),
            Fraction(8, 10),
        )
    )
    interest = deposit * rate / 100
    with_deposit = rng.random() < 0.5
    ask = "cả tiền gửi và tiền lãi là bao nhiêu" if with_deposit else "được bao nhiêu tiền lãi"
    question = (
        f"Bác {name} gửi tiết kiệm {_fmt(deposit)} đồng với lãi suất {_pct(rate)} một tháng. "
        f"Hỏi sau một tháng, bác {name} nhận {ask}?"
    )
    steps: tuple[str, ...] = (
        "Số tiền lãi sau một tháng là:",
        _calc(f"{_fmt(deposit)} × {_fmt(rate)} : 100", _fmt(interest), "đồng"),
    )
    result = interest
    if with_deposit:
        result = deposit + interest
        steps += ("Cả tiền gửi và tiền lãi là:", _calc(f"{_fmt(deposit)} + {_fmt(interest)}", _fmt(result), "đồng"))
    return Draft(question, steps, f"{_fmt(result)} đồng")


@_template("money", GRADE_6)
def cost_from_profit(rng: random.Random) -> Draft:
    """Selling price is (100 + p)% of the cost price."""
    item, low, high, step = rng.choice(_PRICED_ITEMS)
    cost = 1000 * rng.randrange(low, high + 1, step)
    p = rng.choice((5, 10, 12, 15, 20, 25, 30))
    price = cost * (100 + p) // 100
    question = (
        f"Một cửa hàng bán một {item} với giá {_fmt(price)} đồng thì được lãi {_pct(p)} so với giá vốn. "
        f"Hỏi giá vốn của {item} đó là bao nhiêu tiền?"
    )
    steps = (
        "Giá bán so với giá vốn chiếm:",
        _calc(f"100% + {_pct(p)}", _pct(100 + p)),
        f"Giá vốn của {item} đó là:",
        _calc(f"{_fmt(price)} : {100 + p} × 100", _fmt(cost), "đồng"),
    )
    return Draft(question, steps, f"{_fmt(cost)} đồng")


_UNIT_PRICES = (("quyển vở", 6, 15), ("mét vải", 40, 120), ("kg gạo", 16, 30), ("hộp bút", 20, 60), ("cái bánh", 5, 25))


@_template("money", GRADE_6)
def same_price_more_items(rng: random.Random) -> Draft:
    """The price of one, then of several."""
    item, low, high = rng.choice(_UNIT_PRICES)
    price = 1000 * rng.randint(low, high)
    bought, asked = rng.sample(range(2, 16), 2)
    question = (
        f"Mua {bought} {item} hết {_fmt(price * bought)} đồng. Hỏi mua {asked} {item} như thế hết bao nhiêu tiền?"
    )
    steps = (
        f"Giá tiền của 1 {item} là:",
        _calc(f"{_fmt(price * bought)} : {bought}", _fmt(price), "đồng"),
        f"Mua {asked} {item} hết số tiền là:",
        _calc(f"{_fmt(price)} × {asked}", _fmt(price * asked), "đồng"),
    )
    return Draft(question, steps, f"{_fmt(price * asked)} đồng")


# =========================================================================== gcd and lcm


def _factor_lines(numbers: Sequence[int]) -> tuple[str, ...]:
    """``Ta có: 48 = 2⁴ × 3`` for every composite number (primes need no factorising)."""
    lines = [f"{n} = {_power_product(_prime_factors(n))}" for n in numbers if not _is_prime(n)]
    return ("Ta có: " + lines[0], *lines[1:]) if lines else ()


def _gcd_factors(numbers: Sequence[int]) -> dict[int, int]:
    factors = [_prime_factors(n) for n in numbers]
    return {p: min(f.get(p, 0) for f in factors) for p in factors[0] if all(p in f for f in factors)}


def _lcm_factors(numbers: Sequence[int]) -> dict[int, int]:
    factors = [_prime_factors(n) for n in numbers]
    return {p: max(f.get(p, 0) for f in factors) for p in set().union(*factors)}


def _gcd_lcm_line(kind: str, numbers: Sequence[int], factors: dict[int, int], value: int, unit: str = "") -> str:
    """``ƯCLN(48, 60) = 2² × 3 = 12 (phần quà)``."""
    product = _power_product(factors)
    chain = f"{kind}({', '.join(map(str, numbers))})" + (f" = {product}" if product != str(value) else "")
    return _calc(chain, _fmt(value), unit)


_GCD_STORIES = (
    (
        "Cô giáo có {A} quyển vở và {B} chiếc bút chì. Cô muốn chia đều số vở và số bút vào các phần quà sao cho "
        "mỗi phần quà đều có số vở như nhau và số bút như nhau. Hỏi cô có thể chia được nhiều nhất bao nhiêu phần quà?",
        "phần quà",
        "Số phần quà nhiều nhất là ƯCLN({A}, {B}).",
    ),
    (
        "Một đội y tế có {A} bác sĩ và {B} y tá. Có thể chia đội thành nhiều nhất bao nhiêu tổ để số bác sĩ và "
        "số y tá được chia đều vào các tổ?",
        "tổ",
        "Số tổ nhiều nhất là ƯCLN({A}, {B}).",
    ),
    (
        "{name} có hai sợi dây dài {A} cm và {B} cm. {name} muốn cắt cả hai sợi thành các đoạn dài bằng nhau mà "
        "không thừa đoạn nào. Hỏi mỗi đoạn dài nhất là bao nhiêu xăng-ti-mét?",
        "cm",
        "Độ dài lớn nhất của mỗi đoạn là ƯCLN({A}, {B}).",
    ),
    (
        "Người ta muốn chia {A} quả cam và {B} quả quýt vào các đĩa sao cho số cam ở các đĩa như nhau và số quýt ở "
        "các đĩa cũng như nhau. Hỏi chia được nhiều nhất bao nhiêu đĩa?",
        "đĩa",
        "Số đĩa nhiều nhất là ƯCLN({A}, {B}).",
    ),
)


@_template("gcd_lcm", GRADE_6)
def greatest_common_divisor(rng: random.Random) -> Draft:
    """Share two amounts equally into as many groups as possible: ƯCLN."""
    text, unit, reason = rng.choice(_GCD_STORIES)
    while True:
        g = rng.randint(2, 30)
        x, y = rng.sample(range(2, 13), 2)
        if math.gcd(x, y) == 1 and g * max(x, y) <= 360:
            break
    a, b = g * x, g * y
    question = text.format(A=a, B=b, name=rng.choice(NAMES))
    steps = (
        reason.format(A=a, B=b),
        *_factor_lines((a, b)),
        _gcd_lcm_line("ƯCLN", (a, b), _gcd_factors((a, b)), g, unit),
    )
    return Draft(question, steps, f"{g} {unit}")


_LCM_STORIES = (
    (
        3,
        "Ba bạn {n1}, {n2} và {n3} cùng trực nhật lớp. {n1} cứ {a} ngày trực một lần, {n2} cứ {b} ngày trực một "
        "lần, {n3} cứ {c} ngày trực một lần. Hôm nay cả ba bạn cùng trực. Hỏi sau ít nhất bao nhiêu ngày nữa thì "
        "ba bạn lại cùng trực nhật?",
        "ngày",
        "Số ngày cần tìm là BCNN({nums}).",
    ),
    (
        2,
        "Hai xe buýt cùng rời bến vào một thời điểm. Cứ {a} phút lại có một xe buýt tuyến thứ nhất rời bến, cứ {b} "
        "phút lại có một xe buýt tuyến thứ hai rời bến. Hỏi sau ít nhất bao nhiêu phút nữa thì hai xe buýt lại cùng "
        "rời bến?",
        "phút",
        "Số phút cần tìm là BCNN({nums}).",
    ),
    (
        2,
        "Hai bóng đèn cùng sáng vào một thời điểm. Đèn xanh cứ {a} giây sáng một lần, đèn đỏ cứ {b} giây sáng một "
        "lần. Hỏi sau ít nhất bao nhiêu giây nữa thì hai đèn lại cùng sáng?",
        "giây",
        "Số giây cần tìm là BCNN({nums}).",
    ),
    (
        3,
        "Ba con tàu cùng rời cảng vào một ngày. Tàu thứ nhất cứ {a} ngày cập cảng một lần, tàu thứ hai cứ {b} ngày, "
        "tàu thứ ba cứ {c} ngày. Hỏi sau ít nhất bao nhiêu ngày nữa thì ba tàu lại cùng cập cảng?",
        "ngày",
        "Số ngày cần tìm là BCNN({nums}).",
    ),
)


@_template("gcd_lcm", GRADE_6)
def least_common_multiple(rng: random.Random) -> Draft:
    """Periodic events meet again after BCNN of their periods."""
    count, text, unit, reason = rng.choice(_LCM_STORIES)
    high = 12 if count == 3 else 30
    while True:
        numbers = sorted(rng.sample(range(2, high + 1), count))
        lcm = math.lcm(*numbers)
        if lcm > numbers[-1] and lcm <= 360 and all(b % a for a in numbers for b in numbers if a < b):
            break
    n1, n2, n3 = rng.sample(NAMES, 3)
    fields = dict(zip("abc", numbers))
    question = text.format(n1=n1, n2=n2, n3=n3, **fields)
    nums = ", ".join(map(str, numbers))
    steps = (
        reason.format(nums=nums),
        *_factor_lines(numbers),
        _gcd_lcm_line("BCNN", numbers, _lcm_factors(numbers), lcm, unit),
    )
    return Draft(question, steps, f"{lcm} {unit}")


_COMMON_MULTIPLE_STORIES = (
    (
        "Số học sinh khối Sáu của một trường khi xếp {rows} đều vừa đủ, không thừa ai. Biết số học sinh "
        "đó trong khoảng từ {lo} đến {hi} em. Tính số học sinh khối Sáu của trường.",
        "học sinh",
        "hàng {n}",
    ),
    (
        "Một số sách khi xếp thành từng bó {rows} đều vừa đủ bó. Biết số sách đó trong khoảng từ {lo} đến {hi} quyển. "
        "Tính số sách.",
        "quyển",
        "{n} quyển",
    ),
    (
        "Một đội đồng diễn khi xếp {rows} đều vừa đủ. Biết số người của đội trong khoảng từ {lo} đến "
        "{hi} người. Tính số người của đội đồng diễn.",
        "người",
        "hàng {n}",
    ),
)


@_template("gcd_lcm", GRADE_6)
def common_multiple_in_range(rng: random.Random) -> Draft:
    """The one common multiple of the group sizes that lies in a given range."""
    text, unit, group = rng.choice(_COMMON_MULTIPLE_STORIES)
    while True:
        numbers = sorted(rng.sample(range(2, 21), rng.choice((2, 3))))
        lcm = math.lcm(*numbers)
        if 12 <= lcm <= 200 and all(b % a for a in numbers for b in numbers if a < b):
            break
    factor = rng.randint(2, min(8, 1000 // lcm))
    target = lcm * factor
    low_options = [v for v in range(target - lcm + 1, target + 1) if v % 10 == 0] or [target - rng.randint(1, lcm - 1)]
    high_options = [v for v in range(target, target + lcm) if v % 10 == 0] or [target + rng.randint(1, lcm - 1)]
    lo, hi = rng.choice(low_options), rng.choice(high_options)
    rows = _join_vi([group.format(n=n) for n in numbers])
    if unit == "quyển":
        rows = rows.replace(" và ", " hoặc ")
    question = text.format(rows=rows, lo=_fmt(lo), hi=_fmt(hi))
    multiples = [lcm * k for k in range(0, hi // lcm + 2)]
    steps = (
        f"Số {unit} cần tìm là bội chung của {_join_vi([str(n) for n in numbers])} và nằm trong khoảng từ "
        f"{_fmt(lo)} đến {_fmt(hi)}.",
        *_factor_lines(numbers),
        _gcd_lcm_line("BCNN", numbers, _lcm_factors(numbers), lcm),
        f"Các bội chung là bội của {lcm}: {'; '.join(_fmt(m) for m in multiples)}; ...",
        f"Trong các số đó, chỉ có {_fmt(target)} nằm trong khoảng từ {_fmt(lo)} đến {_fmt(hi)}.",
        _calc(f"{lcm} × {factor}", _fmt(target), unit),
    )
    return Draft(question, steps, f"{_fmt(target)} {unit}")


# =========================================================================== integers

_COLD_PLACES = ("Sa Pa", "Mẫu Sơn", "Đồng Văn", "Bắc Hà", "Mát-xcơ-va", "Cáp Nhĩ Tân")
_TIMES_OF_DAY = (
    ("lúc nửa đêm", "buổi sáng", True),
    ("buổi sáng", "buổi trưa", True),
    ("buổi trưa", "buổi tối", False),
    ("buổi chiều", "lúc nửa đêm", False),
)


@_template("integers", GRADE_6)
def temperature_change(rng: random.Random) -> Draft:
    """Adding a rise or subtracting a fall from a below-zero temperature."""
    place = rng.choice(_COLD_PLACES)
    before, after, rises = rng.choice(_TIMES_OF_DAY)
    start = rng.choice([t for t in range(-12, 9) if t])
    change = rng.randint(1, 15)
    end = start + change if rises else start - change
    verb, op = ("tăng thêm", "+") if rises else ("giảm đi", "-")
    question = (
        f"Nhiệt độ {before} ở {place} là {_fmt(start)} °C. Đến {after}, nhiệt độ {verb} {change} °C. "
        f"Hỏi nhiệt độ {after} ở {place} là bao nhiêu độ C?"
    )
    steps = (f"Nhiệt độ {after} ở {place} là:", _calc(f"{_signed(start)} {op} {change}", _fmt(end), "°C"))
    return Draft(question, steps, f"{_fmt(end)} °C")


@_template("integers", GRADE_6)
def height_above_sea(rng: random.Random) -> Draft:
    """Heights below sea level are negative; diving subtracts, rising adds."""
    thing = rng.choice(("tàu ngầm", "thợ lặn", "robot thám hiểm"))
    depth = rng.randint(20, 300) if thing == "tàu ngầm" else rng.randint(5, 60)
    rises = rng.random() < 0.5
    change = rng.randint(2, depth - 1) if rises else rng.randint(2, depth)
    end = -depth + change if rises else -depth - change
    verb, op = ("nổi lên", "+") if rises else ("lặn xuống thêm", "-")
    question = (
        f"Một {thing} đang ở độ cao {_fmt(-depth)} m so với mực nước biển. Sau đó {thing} {verb} {change} m. "
        f"Hỏi lúc này {thing} ở độ cao bao nhiêu mét so với mực nước biển?"
    )
    steps = (f"Độ cao mới của {thing} là:", _calc(f"{_signed(-depth)} {op} {change}", _fmt(end), "m"))
    return Draft(question, steps, f"{_fmt(end)} m")


@_template("integers", GRADE_6)
def quiz_score(rng: random.Random) -> Draft:
    """Right answers add points, wrong ones subtract: the total may be negative."""
    name = rng.choice(NAMES)
    plus, minus = rng.randint(2, 10), rng.randint(1, 6)
    right, wrong = rng.randint(1, 15), rng.randint(1, 15)
    gained, lost = right * plus, wrong * -minus
    total = gained + lost
    question = (
        f"Trong một cuộc thi, mỗi câu trả lời đúng được cộng {plus} điểm, mỗi câu trả lời sai bị trừ {minus} điểm. "
        f"Bạn {name} trả lời đúng {right} câu và trả lời sai {wrong} câu. Hỏi {name} được bao nhiêu điểm?"
    )
    steps = (
        "Số điểm của các câu trả lời đúng là:",
        _calc(f"{right} × {plus}", _fmt(gained), "điểm"),
        "Số điểm của các câu trả lời sai là:",
        _calc(f"{wrong} × {_signed(-minus)}", _fmt(lost), "điểm"),
        f"Số điểm của {name} là:",
        _calc(f"{gained} + {_signed(lost)}", _fmt(total), "điểm"),
    )
    return Draft(question, steps, f"{_fmt(total)} điểm")


@_template("integers", GRADE_6)
def integer_expression(rng: random.Random) -> Draft:
    """Signs: adding a negative, subtracting a negative, multiplying and dividing by one."""
    form = rng.randrange(4)
    if form == 0:
        a, b, c = -rng.randint(5, 99), rng.randint(5, 99), -rng.randint(2, 50)
        expression = f"{_signed(a)} + {b} - {_signed(c)}"
        middle = f"{_signed(a + b)} + {-c}"
        result = a + b - c
    elif form == 1:
        a, b, c = rng.randint(2, 60), rng.randint(2, 12), -rng.randint(2, 12)
        expression = f"{a} - {b} × {_signed(c)}"
        middle = f"{a} - {_signed(b * c)}"
        result = a - b * c
    elif form == 2:
        a, b, c = -rng.randint(2, 15), rng.randint(2, 12), rng.randint(5, 99)
        expression = f"{_signed(a)} × {b} + {c}"
        middle = f"{_signed(a * b)} + {c}"
        result = a * b + c
    else:
        b, q, c = -rng.randint(2, 9), rng.randint(2, 20), rng.randint(2, 60)
        a = b * -q
        expression = f"{a} : {_signed(b)} - {c}"
        middle = f"{_signed(a // b)} - {c}"
        result = a // b - c
    question = f"Tính: {expression}"
    return Draft(question, (f"{expression} = {middle} = {_fmt(result)}",), _fmt(result))


# =========================================================================== public API

TEMPLATES: tuple[Template, ...] = tuple(_REGISTRY)


def make_problem(template: Template, rng: random.Random) -> Problem:
    """Draw one problem from ``template``: the solution is its steps plus the ``Đáp số`` line."""
    draft = template.build(rng)
    solution = "\n".join((*draft.steps, answer_line(draft.answer)))
    return Problem(template.topic, template.grade_id, draft.question, solution, draft.answer)


def generate_problems(n: int = 1200, seed: int = 5) -> list[Problem]:
    """``n`` problems with distinct questions, the same list for the same ``(n, seed)``.

    Topics take turns (round-robin in ``TOPICS`` order) and, within a topic, its templates
    take turns, so topics get near-equal shares and grades follow the templates' mix.  A draw
    whose question was already produced is skipped; after ``ATTEMPTS_PER_PROBLEM × n`` draws
    without reaching ``n`` distinct questions, ValueError (the templates' variety is exhausted).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    groups = [[t for t in TEMPLATES if t.topic == topic] for topic in TOPICS]
    groups = [group for group in groups if group]
    if n and not groups:
        raise ValueError("no problem templates are registered")
    problems: list[Problem] = []
    seen: set[str] = set()
    for attempt in range(ATTEMPTS_PER_PROBLEM * n + 100):
        if len(problems) >= n:
            break
        group = groups[attempt % len(groups)]
        problem = make_problem(group[(attempt // len(groups)) % len(group)], rng)
        if problem.question not in seen:
            seen.add(problem.question)
            problems.append(problem)
    if len(problems) < n:
        raise ValueError(f"only {len(problems)} distinct problems could be drawn, {n} were asked for")
    return problems


def to_content(p: Problem) -> str:
    """The MathPal payload ``content`` of a problem (what the feature pipeline stores)."""
    return f"### QUESTION:\n{p.question}\n\n#### SOLUTION:\n{p.solution}"
