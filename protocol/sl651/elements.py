"""SL 651-2014 element identifiers (Appendix C) and their values in HEX/BCD bodies.

An identifier is two bytes: the element's lead byte, then a byte whose high 5 bits give
the data's size in bytes and low 3 bits its decimals (6.6.3.2). Numbers are BCD; a first
byte FF marks a negative number; data all FF means "no value" (the filler of equal-interval
reports, 6.6.4.4 d). The 5-minute series of hourly reports (F4, F5-FC) are HEX. This
module must never import anything of the project and raises only ``Sl651Error``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from protocol.sl651.errors import BadValueError
from protocol.sl651.wire import bcd_bytes, bcd_digits


class ElementId(enum.IntEnum):
    """Element lead bytes of SL 651-2014 Table C.1 (mnemonic and name beside each)."""

    OBSERVATION_TIME = 0xF0  # TT 观测时间引导符
    STATION = 0xF1  # ST 测站编码引导符
    MANUAL = 0xF2  # RGZS 人工置数
    PICTURE = 0xF3  # PIC 图片信息
    RAINFALL_5MIN_SERIES = 0xF4  # DRP 1小时内每5分钟时段雨量
    LEVEL_5MIN_SERIES_1 = 0xF5  # DRZ1 1小时内5分钟间隔相对水位1
    LEVEL_5MIN_SERIES_2 = 0xF6  # DRZ2
    LEVEL_5MIN_SERIES_3 = 0xF7  # DRZ3
    LEVEL_5MIN_SERIES_4 = 0xF8  # DRZ4
    LEVEL_5MIN_SERIES_5 = 0xF9  # DRZ5
    LEVEL_5MIN_SERIES_6 = 0xFA  # DRZ6
    LEVEL_5MIN_SERIES_7 = 0xFB  # DRZ7
    LEVEL_5MIN_SERIES_8 = 0xFC  # DRZ8
    SECTION_AREA = 0x01  # AC 断面面积
    AIR_TEMPERATURE = 0x02  # AI 瞬时气温
    WATER_TEMPERATURE = 0x03  # C 瞬时水温
    TIME_STEP = 0x04  # DRxnn 时间步长码
    DURATION = 0x05  # DT 时段长,降水、引排水、抽水历时
    DAILY_EVAPORATION = 0x06  # ED 日蒸发量
    CURRENT_EVAPORATION = 0x07  # EJ 当前蒸发
    AIR_PRESSURE = 0x08  # FL 气压
    GATE_OPENING = 0x09  # GH 闸坝、水库闸门开启高度
    GATE_NUMBER = 0x0A  # GN 输水设备、闸门(组)编号
    CONVEYANCE_KIND = 0x0B  # GS 输水设备类别
    GATE_OPENINGS_COUNT = 0x0C  # GT 水库、闸坝闸门开启孔数
    GROUND_TEMPERATURE = 0x0D  # GTP 地温
    GROUNDWATER_DEPTH = 0x0E  # H 地下水瞬时埋深
    WAVE_HEIGHT = 0x0F  # HW 波浪高度
    SOIL_MOISTURE_10CM = 0x10  # M10 10厘米处土壤含水量
    SOIL_MOISTURE_20CM = 0x11  # M20 20厘米处土壤含水量
    SOIL_MOISTURE_30CM = 0x12  # M30 30厘米处土壤含水量
    SOIL_MOISTURE_40CM = 0x13  # M40 40厘米处土壤含水量
    SOIL_MOISTURE_50CM = 0x14  # M50 50厘米处土壤含水量
    SOIL_MOISTURE_60CM = 0x15  # M60 60厘米处土壤含水量
    SOIL_MOISTURE_80CM = 0x16  # M80 80厘米处土壤含水量
    SOIL_MOISTURE_100CM = 0x17  # M100 100厘米处土壤含水量
    HUMIDITY = 0x18  # MST 湿度
    UNITS_RUNNING = 0x19  # NS 开机台数
    RAINFALL_1H = 0x1A  # P1 1小时时段降水量
    RAINFALL_2H = 0x1B  # P2 2小时时段降水量
    RAINFALL_3H = 0x1C  # P3 3小时时段降水量
    RAINFALL_6H = 0x1D  # P6 6小时时段降水量
    RAINFALL_12H = 0x1E  # P12 12小时时段降水量
    RAINFALL_DAY = 0x1F  # PD 日降水量
    RAINFALL_CURRENT = 0x20  # PJ 当前降水量
    RAINFALL_1MIN = 0x21  # PN01 1分钟时段降水量
    RAINFALL_5MIN = 0x22  # PN05 5分钟时段降水量
    RAINFALL_10MIN = 0x23  # PN10 10分钟时段降水量
    RAINFALL_30MIN = 0x24  # PN30 30分钟时段降水量
    RAINSTORM_TOTAL = 0x25  # PR 暴雨量
    RAINFALL_ACCUMULATED = 0x26  # PT 降水量累计值
    FLOW = 0x27  # Q 瞬时流量、抽水流量
    INTAKE_FLOW_1 = 0x28  # Q1 取(排)水口流量1
    INTAKE_FLOW_2 = 0x29  # Q2 取(排)水口流量2
    INTAKE_FLOW_3 = 0x2A  # Q3 取(排)水口流量3
    INTAKE_FLOW_4 = 0x2B  # Q4 取(排)水口流量4
    INTAKE_FLOW_5 = 0x2C  # Q5 取(排)水口流量5
    INTAKE_FLOW_6 = 0x2D  # Q6 取(排)水口流量6
    INTAKE_FLOW_7 = 0x2E  # Q7 取(排)水口流量7
    INTAKE_FLOW_8 = 0x2F  # Q8 取(排)水口流量8
    OUTFLOW_TOTAL = 0x30  # QA 总出库流量、过闸总流量
    GATE_FLOW = 0x31  # QZ 输水设备流量、过闸(组)流量
    SEDIMENT_DISCHARGE = 0x32  # SW 输沙量
    WIND_DIRECTION = 0x33  # UC 风向
    WIND_FORCE = 0x34  # UE 风力(级)
    WIND_SPEED = 0x35  # US 风速
    MEAN_VELOCITY = 0x36  # VA 断面平均流速
    VELOCITY = 0x37  # VJ 当前瞬时流速
    VOLTAGE = 0x38  # VT 电源电压
    WATER_LEVEL = 0x39  # Z 瞬时河道水位、潮位
    DOWNSTREAM_LEVEL = 0x3A  # ZB 库(闸、站)下水位
    UPSTREAM_LEVEL = 0x3B  # ZU 库(闸、站)上水位
    INTAKE_LEVEL_1 = 0x3C  # Z1 取(排)水口水位1
    INTAKE_LEVEL_2 = 0x3D  # Z2 取(排)水口水位2
    INTAKE_LEVEL_3 = 0x3E  # Z3 取(排)水口水位3
    INTAKE_LEVEL_4 = 0x3F  # Z4 取(排)水口水位4
    INTAKE_LEVEL_5 = 0x40  # Z5 取(排)水口水位5
    INTAKE_LEVEL_6 = 0x41  # Z6 取(排)水口水位6
    INTAKE_LEVEL_7 = 0x42  # Z7 取(排)水口水位7
    INTAKE_LEVEL_8 = 0x43  # Z8 取(排)水口水位8
    SEDIMENT_CONCENTRATION = 0x44  # SQ 含沙量
    STATUS = 0x45  # ZT 遥测站状态及报警信息
    PH = 0x46  # pH pH值
    DISSOLVED_OXYGEN = 0x47  # DO 溶解氧
    CONDUCTIVITY = 0x48  # COND 电导率
    TURBIDITY = 0x49  # TURB 浊度
    PERMANGANATE_INDEX = 0x4A  # CODMN 高锰酸盐指数
    REDOX_POTENTIAL = 0x4B  # REDOX 氧化还原电位
    AMMONIA_NITROGEN = 0x4C  # NH4N 氨氮
    TOTAL_PHOSPHORUS = 0x4D  # TP 总磷
    TOTAL_NITROGEN = 0x4E  # TN 总氮
    TOTAL_ORGANIC_CARBON = 0x4F  # TOC 总有机碳
    COPPER = 0x50  # CU 铜
    ZINC = 0x51  # ZN 锌
    SELENIUM = 0x52  # SE 硒
    ARSENIC = 0x53  # AS 砷
    MERCURY = 0x54  # THG 总汞
    CADMIUM = 0x55  # CD 镉
    LEAD = 0x56  # PB 铅
    CHLOROPHYLL_A = 0x57  # CHLA 叶绿素a
    WATER_PRESSURE_1 = 0x58  # WP1 水压1
    WATER_PRESSURE_2 = 0x59  # WP2 水压2
    WATER_PRESSURE_3 = 0x5A  # WP3 水压3
    WATER_PRESSURE_4 = 0x5B  # WP4 水压4
    WATER_PRESSURE_5 = 0x5C  # WP5 水压5
    WATER_PRESSURE_6 = 0x5D  # WP6 水压6
    WATER_PRESSURE_7 = 0x5E  # WP7 水压7
    WATER_PRESSURE_8 = 0x5F  # WP8 水压8
    METER_1_REMAINING = 0x60  # SYL1 水表1剩余水量
    METER_2_REMAINING = 0x61  # SYL2 水表2剩余水量
    METER_3_REMAINING = 0x62  # SYL3 水表3剩余水量
    METER_4_REMAINING = 0x63  # SYL4 水表4剩余水量
    METER_5_REMAINING = 0x64  # SYL5 水表5剩余水量
    METER_6_REMAINING = 0x65  # SYL6 水表6剩余水量
    METER_7_REMAINING = 0x66  # SYL7 水表7剩余水量
    METER_8_REMAINING = 0x67  # SYL8 水表8剩余水量
    METER_1_HOURLY = 0x68  # SBL1 水表1每小时水量
    METER_2_HOURLY = 0x69  # SBL2 水表2每小时水量
    METER_3_HOURLY = 0x6A  # SBL3 水表3每小时水量
    METER_4_HOURLY = 0x6B  # SBL4 水表4每小时水量
    METER_5_HOURLY = 0x6C  # SBL5 水表5每小时水量
    METER_6_HOURLY = 0x6D  # SBL6 水表6每小时水量
    METER_7_HOURLY = 0x6E  # SBL7 水表7每小时水量
    METER_8_HOURLY = 0x6F  # SBL8 水表8每小时水量
    AC_VOLTAGE_A = 0x70  # VTA 交流A相电压
    AC_VOLTAGE_B = 0x71  # VTB 交流B相电压
    AC_VOLTAGE_C = 0x72  # VTC 交流C相电压
    AC_CURRENT_A = 0x73  # VIA 交流A相电流
    AC_CURRENT_B = 0x74  # VIB 交流B相电流
    AC_CURRENT_C = 0x75  # VIC 交流C相电流


@dataclass(frozen=True)
class NumberSpec:
    """A number element's Table C.1 data definition N(digits, decimals) and unit."""

    mnemonic: str
    unit: str
    digits: int
    decimals: int

    @property
    def size(self) -> int:
        """Bytes the standard's digits take in BCD."""
        return (self.digits + 1) // 2


#: Every number element of Table C.1: mnemonic, unit, N(digits, decimals). DURATION
#: (时段长, HH.mm) is sent as a number of hours with the minutes as two decimals.
NUMBERS: dict[ElementId, NumberSpec] = {
    element: NumberSpec(*spec)
    for element, spec in {
        ElementId.SECTION_AREA: ("AC", "m2", 8, 2),
        ElementId.AIR_TEMPERATURE: ("AI", "degC", 3, 1),
        ElementId.WATER_TEMPERATURE: ("C", "degC", 3, 1),
        ElementId.DAILY_EVAPORATION: ("ED", "mm", 5, 1),
        ElementId.CURRENT_EVAPORATION: ("EJ", "mm", 5, 1),
        ElementId.AIR_PRESSURE: ("FL", "hPa", 5, 0),
        ElementId.GATE_OPENING: ("GH", "m", 5, 2),
        ElementId.GATE_NUMBER: ("GN", "", 3, 0),
        ElementId.CONVEYANCE_KIND: ("GS", "", 1, 0),
        ElementId.GATE_OPENINGS_COUNT: ("GT", "", 3, 0),
        ElementId.GROUND_TEMPERATURE: ("GTP", "degC", 3, 1),
        ElementId.GROUNDWATER_DEPTH: ("H", "m", 6, 2),
        ElementId.WAVE_HEIGHT: ("HW", "m", 5, 2),
        ElementId.SOIL_MOISTURE_10CM: ("M10", "%", 4, 1),
        ElementId.SOIL_MOISTURE_20CM: ("M20", "%", 4, 1),
        ElementId.SOIL_MOISTURE_30CM: ("M30", "%", 4, 1),
        ElementId.SOIL_MOISTURE_40CM: ("M40", "%", 4, 1),
        ElementId.SOIL_MOISTURE_50CM: ("M50", "%", 4, 1),
        ElementId.SOIL_MOISTURE_60CM: ("M60", "%", 4, 1),
        ElementId.SOIL_MOISTURE_80CM: ("M80", "%", 4, 1),
        ElementId.SOIL_MOISTURE_100CM: ("M100", "%", 4, 1),
        ElementId.HUMIDITY: ("MST", "%", 4, 1),
        ElementId.UNITS_RUNNING: ("NS", "", 2, 0),
        ElementId.RAINFALL_1H: ("P1", "mm", 5, 1),
        ElementId.RAINFALL_2H: ("P2", "mm", 5, 1),
        ElementId.RAINFALL_3H: ("P3", "mm", 5, 1),
        ElementId.RAINFALL_6H: ("P6", "mm", 5, 1),
        ElementId.RAINFALL_12H: ("P12", "mm", 5, 1),
        ElementId.RAINFALL_DAY: ("PD", "mm", 5, 1),
        ElementId.RAINFALL_CURRENT: ("PJ", "mm", 5, 1),
        ElementId.RAINFALL_1MIN: ("PN01", "mm", 5, 1),
        ElementId.RAINFALL_5MIN: ("PN05", "mm", 5, 1),
        ElementId.RAINFALL_10MIN: ("PN10", "mm", 5, 1),
        ElementId.RAINFALL_30MIN: ("PN30", "mm", 5, 1),
        ElementId.RAINSTORM_TOTAL: ("PR", "mm", 5, 1),
        ElementId.RAINFALL_ACCUMULATED: ("PT", "mm", 6, 1),
        ElementId.FLOW: ("Q", "m3/s", 9, 3),
        ElementId.INTAKE_FLOW_1: ("Q1", "m3/s", 9, 3),
        ElementId.INTAKE_FLOW_2: ("Q2", "m3/s", 9, 3),
        ElementId.INTAKE_FLOW_3: ("Q3", "m3/s", 9, 3),
        ElementId.INTAKE_FLOW_4: ("Q4", "m3/s", 9, 3),
        ElementId.INTAKE_FLOW_5: ("Q5", "m3/s", 9, 3),
        ElementId.INTAKE_FLOW_6: ("Q6", "m3/s", 9, 3),
        ElementId.INTAKE_FLOW_7: ("Q7", "m3/s", 9, 3),
        ElementId.INTAKE_FLOW_8: ("Q8", "m3/s", 9, 3),
        ElementId.OUTFLOW_TOTAL: ("QA", "m3/s", 9, 3),
        ElementId.GATE_FLOW: ("QZ", "m3/s", 9, 3),
        ElementId.SEDIMENT_DISCHARGE: ("SW", "10^4 t", 11, 3),
        ElementId.WIND_DIRECTION: ("UC", "", 2, 0),
        ElementId.WIND_FORCE: ("UE", "", 2, 0),
        ElementId.WIND_SPEED: ("US", "m/s", 4, 1),
        ElementId.MEAN_VELOCITY: ("VA", "m/s", 5, 3),
        ElementId.VELOCITY: ("VJ", "m/s", 5, 3),
        ElementId.VOLTAGE: ("VT", "V", 4, 2),
        ElementId.WATER_LEVEL: ("Z", "m", 7, 3),
        ElementId.DOWNSTREAM_LEVEL: ("ZB", "m", 7, 3),
        ElementId.UPSTREAM_LEVEL: ("ZU", "m", 7, 3),
        ElementId.INTAKE_LEVEL_1: ("Z1", "m", 7, 3),
        ElementId.INTAKE_LEVEL_2: ("Z2", "m", 7, 3),
        ElementId.INTAKE_LEVEL_3: ("Z3", "m", 7, 3),
        ElementId.INTAKE_LEVEL_4: ("Z4", "m", 7, 3),
        ElementId.INTAKE_LEVEL_5: ("Z5", "m", 7, 3),
        ElementId.INTAKE_LEVEL_6: ("Z6", "m", 7, 3),
        ElementId.INTAKE_LEVEL_7: ("Z7", "m", 7, 3),
        ElementId.INTAKE_LEVEL_8: ("Z8", "m", 7, 3),
        ElementId.SEDIMENT_CONCENTRATION: ("SQ", "kg/m3", 9, 3),
        ElementId.PH: ("pH", "", 4, 2),
        ElementId.DISSOLVED_OXYGEN: ("DO", "mg/L", 4, 1),
        ElementId.CONDUCTIVITY: ("COND", "uS/cm", 5, 0),
        ElementId.TURBIDITY: ("TURB", "NTU", 3, 0),
        ElementId.PERMANGANATE_INDEX: ("CODMN", "mg/L", 4, 1),
        ElementId.REDOX_POTENTIAL: ("REDOX", "mV", 5, 1),
        ElementId.AMMONIA_NITROGEN: ("NH4N", "mg/L", 6, 2),
        ElementId.TOTAL_PHOSPHORUS: ("TP", "mg/L", 5, 3),
        ElementId.TOTAL_NITROGEN: ("TN", "mg/L", 5, 2),
        ElementId.TOTAL_ORGANIC_CARBON: ("TOC", "mg/L", 4, 2),
        ElementId.COPPER: ("CU", "mg/L", 7, 4),
        ElementId.ZINC: ("ZN", "mg/L", 6, 4),
        ElementId.SELENIUM: ("SE", "mg/L", 7, 5),
        ElementId.ARSENIC: ("AS", "mg/L", 7, 5),
        ElementId.MERCURY: ("THG", "mg/L", 7, 5),
        ElementId.CADMIUM: ("CD", "mg/L", 7, 5),
        ElementId.LEAD: ("PB", "mg/L", 7, 5),
        ElementId.CHLOROPHYLL_A: ("CHLA", "mg/L", 4, 2),
        ElementId.WATER_PRESSURE_1: ("WP1", "kPa", 5, 2),
        ElementId.WATER_PRESSURE_2: ("WP2", "kPa", 5, 2),
        ElementId.WATER_PRESSURE_3: ("WP3", "kPa", 5, 2),
        ElementId.WATER_PRESSURE_4: ("WP4", "kPa", 5, 2),
        ElementId.WATER_PRESSURE_5: ("WP5", "kPa", 5, 2),
        ElementId.WATER_PRESSURE_6: ("WP6", "kPa", 5, 2),
        ElementId.WATER_PRESSURE_7: ("WP7", "kPa", 5, 2),
        ElementId.WATER_PRESSURE_8: ("WP8", "kPa", 5, 2),
        ElementId.METER_1_REMAINING: ("SYL1", "m3", 11, 3),
        ElementId.METER_2_REMAINING: ("SYL2", "m3", 11, 3),
        ElementId.METER_3_REMAINING: ("SYL3", "m3", 11, 3),
        ElementId.METER_4_REMAINING: ("SYL4", "m3", 11, 3),
        ElementId.METER_5_REMAINING: ("SYL5", "m3", 11, 3),
        ElementId.METER_6_REMAINING: ("SYL6", "m3", 11, 3),
        ElementId.METER_7_REMAINING: ("SYL7", "m3", 11, 3),
        ElementId.METER_8_REMAINING: ("SYL8", "m3", 11, 3),
        ElementId.METER_1_HOURLY: ("SBL1", "m3/h", 10, 2),
        ElementId.METER_2_HOURLY: ("SBL2", "m3/h", 10, 2),
        ElementId.METER_3_HOURLY: ("SBL3", "m3/h", 10, 2),
        ElementId.METER_4_HOURLY: ("SBL4", "m3/h", 10, 2),
        ElementId.METER_5_HOURLY: ("SBL5", "m3/h", 10, 2),
        ElementId.METER_6_HOURLY: ("SBL6", "m3/h", 10, 2),
        ElementId.METER_7_HOURLY: ("SBL7", "m3/h", 10, 2),
        ElementId.METER_8_HOURLY: ("SBL8", "m3/h", 10, 2),
        ElementId.AC_VOLTAGE_A: ("VTA", "V", 4, 1),
        ElementId.AC_VOLTAGE_B: ("VTB", "V", 4, 1),
        ElementId.AC_VOLTAGE_C: ("VTC", "V", 4, 1),
        ElementId.AC_CURRENT_A: ("VIA", "A", 4, 1),
        ElementId.AC_CURRENT_B: ("VIB", "A", 4, 1),
        ElementId.AC_CURRENT_C: ("VIC", "A", 4, 1),
        ElementId.DURATION: ("DT", "h.min", 4, 2),
    }.items()
}

#: The 5-minute series of hourly reports: 12 values, one byte (0.1 mm) or two (0.01 m) each.
FIVE_MINUTE_SERIES = frozenset(
    {ElementId.RAINFALL_5MIN_SERIES, *(ElementId(code) for code in range(0xF5, 0xFD))}
)
SERIES_LENGTH = 12


@dataclass(frozen=True)
class Number:
    """One number element: ``value`` in the element's unit, None for "no value" (all FF).

    ``size`` (bytes) and ``decimals`` are what the identifier byte says; ``number()``
    fills in the standard's.
    """

    element: ElementId
    value: Decimal | None
    size: int
    decimals: int


@dataclass(frozen=True)
class Series:
    """The values of one element at equal intervals (function 31/38, after a time step)."""

    element: ElementId
    values: tuple[Decimal | None, ...]
    size: int
    decimals: int


@dataclass(frozen=True)
class FiveMinuteSeries:
    """12 five-minute values in an hour: rainfall (mm, F4) or a relative level (m, F5-FC)."""

    element: ElementId
    values: tuple[Decimal | None, ...]


@dataclass(frozen=True)
class TimeStep:
    """Time step code (04, Table C.3): the interval of an equal-interval report."""

    days: int = 0
    hours: int = 0
    minutes: int = 0


@dataclass(frozen=True)
class StationStatus:
    """Station status and alarm bits (45, Table 58), 4 bytes HEX, kept as an integer."""

    bits: int


@dataclass(frozen=True)
class Picture:
    """A JPEG picture (F3F3), the rest of the body."""

    data: bytes


Item = Number | Series | FiveMinuteSeries | TimeStep | StationStatus | Picture


def number(element: ElementId, value: Decimal | int | str | None) -> Number:
    """A number element with the standard's size and decimals for ``element``."""
    spec = NUMBERS.get(element)
    if spec is None:
        raise BadValueError(f"{element.name} is not a number element")
    return Number(element, None if value is None else Decimal(value), spec.size, spec.decimals)


def _scaled(value: Decimal, decimals: int, what: str) -> int:
    try:
        scaled = value.scaleb(decimals)
        if not scaled.is_finite() or scaled != scaled.to_integral_value():
            raise BadValueError(f"{what}: {value} has more than {decimals} decimal(s)")
        return int(scaled)
    except InvalidOperation:
        raise BadValueError(f"{what}: {value} is not a number") from None


def encode_number(value: Decimal | None, size: int, decimals: int, what: str) -> bytes:
    """``value`` as ``size`` BCD bytes (negative: FF then digits); None as all FF."""
    if value is None:
        return b"\xff" * size
    scaled = _scaled(value, decimals, what)
    if value.is_signed():  # negative, or -0 as decoded from FF 00 ...
        if size < 2:
            raise BadValueError(f"{what}: a negative value needs at least 2 bytes")
        return b"\xff" + bcd_bytes(str(-scaled), size - 1, what)
    return bcd_bytes(str(scaled), size, what)


def decode_number(data: bytes, decimals: int, what: str) -> Decimal | None:
    """The number in ``data`` (see ``encode_number``)."""
    if data == b"\xff" * len(data):
        return None
    sign = 1
    if data[0] == 0xFF:
        sign, data = -1, data[1:]
    digits = bcd_digits(data, what)
    # Built from sign and digits so that FF 00 .. (minus zero) keeps its sign both ways.
    magnitude = tuple(int(d) for d in digits.lstrip("0") or "0")
    return Decimal((1 if sign < 0 else 0, magnitude, -decimals))


def identifier_byte(size: int, decimals: int, what: str) -> int:
    """The second identifier byte: size (0..31) in the high 5 bits, decimals (0..7) low."""
    if not (1 <= size <= 31 and 0 <= decimals <= 7):
        raise BadValueError(f"{what}: size {size} / decimals {decimals} do not fit the identifier")
    return size << 3 | decimals


def decode_five_minute(element: ElementId, data: bytes) -> FiveMinuteSeries:
    """The 12 values of an F4 (1 byte, 0.1 mm) or F5-FC (2 bytes, 0.01 m) series."""
    width = 1 if element is ElementId.RAINFALL_5MIN_SERIES else 2
    values: list[Decimal | None] = []
    for i in range(SERIES_LENGTH):
        raw = int.from_bytes(data[i * width : (i + 1) * width], "big")
        missing = raw == (1 << (8 * width)) - 1
        values.append(None if missing else Decimal(raw).scaleb(-width))
    return FiveMinuteSeries(element, tuple(values))


def encode_five_minute(series: FiveMinuteSeries) -> bytes:
    """The 24 or 12 bytes of a 5-minute series."""
    width = 1 if series.element is ElementId.RAINFALL_5MIN_SERIES else 2
    what = series.element.name
    if len(series.values) != SERIES_LENGTH:
        raise BadValueError(f"{what}: {len(series.values)} values, a series has 12")
    out = bytearray()
    top = (1 << (8 * width)) - 1
    for value in series.values:
        raw = top if value is None else _scaled(value, width, what)
        if value is not None and not 0 <= raw < top:
            raise BadValueError(f"{what}: {value} is outside 0..{Decimal(top - 1).scaleb(-width)}")
        out += raw.to_bytes(width, "big")
    return bytes(out)


def decode_time_step(data: bytes) -> TimeStep:
    """The 3 BCD bytes d, h, m of a time step code."""
    digits = bcd_digits(data, "time step")
    return TimeStep(int(digits[0:2]), int(digits[2:4]), int(digits[4:6]))


def encode_time_step(step: TimeStep) -> bytes:
    """A time step code as 3 BCD bytes."""
    parts = (step.days, step.hours, step.minutes)
    if not all(0 <= part <= 99 for part in parts):
        raise BadValueError(f"time step {step} does not fit two digits per field")
    return bytes.fromhex("".join(f"{part:02d}" for part in parts))
