"""Writes documents.jsonl and questions.jsonl: the evaluation set, kept as readable Python data here.

Run `python services/query/eval/make_set.py` after editing; `make eval` reads the .jsonl files.
A fictional company (Fernhill Robotics) so that no model can answer from what it memorised, plus two
look-alike fictional companies (Brindlewick Logistics, Corvale Foods) whose policies share topics and wording
but not values. Every question has a type:
  direct        the wording of the question is close to the wording of the answer,
  paraphrase    the question shares no content word with the sentence that answers it,
  lookalike     a question about Brindlewick or Corvale, whose twin document at the other company gives
                a different value,
  unanswerable  no document answers it (some share many words with the documents); the right outcome is
                NO_CONTEXT,
  followup      the second question of a two-turn conversation (sent as `messages`), with the same
                question asked standalone beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (id, title, text)
FERNHILL_DOCUMENTS = [
    (
        "leave",
        "Annual leave",
        "Every employee at Fernhill Robotics receives 27 days of paid annual leave per calendar year. Leave requests must be submitted in the HR portal at least ten working days in advance. Up to five unused days can be carried over into the next year; carried-over days expire on 31 March.",
    ),
    (
        "sick-leave",
        "Sick leave",
        "If you are ill, notify your team lead before 10:00 on the first day of absence. A doctor's note is required from the fourth consecutive day of sickness. Sick days do not reduce your annual leave balance.",
    ),
    (
        "parental-leave",
        "Parental leave",
        "Fernhill offers 20 weeks of fully paid parental leave to every new parent, regardless of gender. Parental leave can be split into at most three blocks and must be taken within 24 months of the birth or adoption.",
    ),
    (
        "remote-work",
        "Remote work",
        "Employees may work remotely up to three days per week. Tuesdays are office days for every team, so that meetings can happen in person. Working from another country requires approval from HR for stays longer than 30 days.",
    ),
    (
        "office-hours",
        "Office hours and access",
        "The Lyon office is open from 7:30 to 20:00 on weekdays. Badges are needed to enter after 18:00. The office is closed on weekends and on French public holidays.",
    ),
    (
        "badges",
        "Badges",
        "Lost badges must be reported to reception within 24 hours. A replacement badge costs 15 euros, deducted from the next salary. Visitor badges are issued at reception and must be returned on leaving.",
    ),
    (
        "expenses",
        "Expense reports",
        "Submit expense reports in Ledgerly within 30 days of the purchase, with a photo of the receipt. Expenses above 500 euros need prior approval from your budget owner. Reimbursements are paid with the monthly salary.",
    ),
    (
        "travel",
        "Business travel",
        "Book business trips through the Voyago portal. Trains are preferred for trips under five hours. Economy class is the default for flights; business class is allowed for flights longer than eight hours. The hotel budget is 160 euros per night in Paris and 120 euros elsewhere.",
    ),
    (
        "per-diem",
        "Meal allowance on trips",
        "During business travel the daily meal allowance is 45 euros. Alcohol is not reimbursed. Client dinners are covered separately and need the client's name on the expense report.",
    ),
    (
        "equipment",
        "Laptops and equipment",
        "New employees choose between a 14-inch ThinkPad and a MacBook Pro. Laptops are replaced every four years. Each employee also gets a 300 euro home-office budget once, for a chair, screen or desk.",
    ),
    (
        "vpn",
        "VPN access",
        "To reach internal services from outside the office, connect with the WireGuard VPN. Download your personal profile from the IT portal at it.fernhill.example; profiles are valid for 90 days and must then be renewed.",
    ),
    (
        "passwords",
        "Passwords and MFA",
        "Passwords must be at least 14 characters long. Multi-factor authentication with a hardware key is mandatory for email, the code forge and the HR portal. Never reuse a Fernhill password on another site.",
    ),
    (
        "security-incidents",
        "Reporting security incidents",
        "Report suspected phishing or a lost device immediately to security@fernhill.example or on the #sec-incidents channel. The on-call security engineer answers within 15 minutes, day and night.",
    ),
    (
        "onboarding",
        "Onboarding",
        "On the first day, new employees meet their onboarding buddy at 9:30 at reception. The first week includes a safety training in the robotics lab and a tour of the assembly line. The probation period lasts four months.",
    ),
    (
        "lab-safety",
        "Robotics lab safety",
        "Safety glasses are mandatory in the robotics lab at all times. Robot arms must be in locked mode before anyone enters the fenced cell. The emergency stop buttons are red and located at every exit of the lab.",
    ),
    (
        "assembly-line",
        "Assembly line",
        "The assembly line runs two shifts, from 6:00 to 14:00 and from 14:00 to 22:00. Each shift starts with a ten-minute safety briefing. Quality checks happen at station 7, before packaging.",
    ),
    (
        "product-kestrel",
        "Kestrel robot",
        "Kestrel is Fernhill's warehouse picking robot. It carries up to 18 kilograms, runs for nine hours on one charge, and navigates with lidar and ceiling markers. Kestrel was launched in 2023.",
    ),
    (
        "product-heron",
        "Heron arm",
        "Heron is a collaborative robot arm for laboratories. It has six axes, a reach of 850 millimetres and a payload of 5 kilograms. Heron stops within 50 milliseconds when it touches a person.",
    ),
    (
        "support-hours",
        "Customer support",
        "Customer support answers tickets from 8:00 to 18:00 Central European Time on weekdays. Customers with a Premium contract get a phone line that is staffed around the clock. The target first response time is four business hours.",
    ),
    (
        "warranty",
        "Warranty",
        "All Fernhill robots carry a two-year warranty on parts and labour. Batteries are covered for 18 months. The warranty is void if the robot was opened by someone who is not a certified technician.",
    ),
    (
        "returns",
        "Returns",
        "Customers can return an unused robot within 30 days for a full refund. Return shipping is paid by Fernhill. Robots that were deployed in production can only be returned through the warranty process.",
    ),
    (
        "salary",
        "Salary and payday",
        "Salaries are paid on the 25th of each month. If the 25th falls on a weekend, payment happens on the previous Friday. Payslips are available in the HR portal.",
    ),
    (
        "bonus",
        "Annual bonus",
        "The annual bonus is up to 10 percent of the yearly base salary. It depends half on company results and half on personal objectives, and is paid in April.",
    ),
    (
        "training",
        "Training budget",
        "Every employee has a yearly training budget of 1,200 euros for courses, conferences and books. Requests go to your manager at least three weeks before the course starts.",
    ),
    (
        "canteen",
        "Canteen",
        "The canteen serves lunch from 11:45 to 14:00. A vegetarian dish is offered every day, and Thursdays are fully vegetarian. Meals cost 4.50 euros for employees thanks to a company subsidy.",
    ),
    (
        "parking",
        "Parking and bikes",
        "The car park has 60 spaces, assigned by a monthly lottery. Bicycle parking in the basement is free and has charging points for e-bikes. Employees who cycle to work receive 35 euros a month.",
    ),
    (
        "code-review",
        "Code review",
        "Every change to the robot firmware needs approval from two reviewers, one of whom must be from the safety team. Reviews should be done within one business day. Merges to the main branch are blocked on Fridays after 15:00.",
    ),
    (
        "releases",
        "Firmware releases",
        "Firmware is released every six weeks. Release candidates run for one week on the test fleet of twelve Kestrel robots before they go to customers. Hotfixes can skip the test fleet only with the CTO's approval.",
    ),
    (
        "on-call",
        "On-call rotation",
        "Engineers join the on-call rotation after their probation period. A shift lasts one week, from Monday 10:00 to the next Monday 10:00. On-call engineers receive 250 euros per week of on-call duty.",
    ),
    (
        "meeting-rooms",
        "Meeting rooms",
        "Meeting rooms are booked in the calendar. The largest room, Summit, seats 24 people and has a video-conference system. Rooms booked but unused for 15 minutes are released automatically.",
    ),
    (
        "recycling",
        "Waste and recycling",
        "Electronic waste and used batteries go to the yellow bins next to the loading dock. Paper and cardboard go to the blue bins on every floor. The facilities team empties the yellow bins every Wednesday.",
    ),
    (
        "whistleblowing",
        "Whistleblowing",
        "Concerns about fraud, safety or discrimination can be reported anonymously through the EthicsLine website. Reports are handled by the compliance officer, and retaliation against a reporter is a dismissible offence.",
    ),
]

# Type "direct": (question, expected chunk ids, expected fact in the answer)
QUESTIONS = [
    ("How many days of paid annual leave do Fernhill employees get?", ["leave:0"], "27"),
    ("How far in advance must leave requests be submitted?", ["leave:0"], "ten"),
    ("When do carried-over leave days expire?", ["leave:0"], "31 March"),
    ("From which day of sickness is a doctor's note required?", ["sick-leave:0"], "fourth"),
    ("How long is parental leave?", ["parental-leave:0"], "20 weeks"),
    ("How many days per week can I work remotely?", ["remote-work:0"], "three"),
    ("Which day is an office day for every team?", ["remote-work:0"], "Tuesday"),
    ("Until what time is the Lyon office open on weekdays?", ["office-hours:0"], "20:00"),
    ("How much does a replacement badge cost?", ["badges:0"], "15"),
    ("Which tool is used for expense reports?", ["expenses:0"], "Ledgerly"),
    ("Above what amount do expenses need prior approval?", ["expenses:0"], "500"),
    ("What is the hotel budget per night in Paris?", ["travel:0"], "160"),
    ("When is business class allowed on flights?", ["travel:0"], "eight hours"),
    ("What is the daily meal allowance during business travel?", ["per-diem:0"], "45"),
    ("How often are laptops replaced?", ["equipment:0"], "four years"),
    ("How big is the home-office budget?", ["equipment:0"], "300"),
    ("Which VPN client do I use to reach internal services?", ["vpn:0"], "WireGuard"),
    ("How long are VPN profiles valid?", ["vpn:0"], "90 days"),
    ("What is the minimum password length?", ["passwords:0"], "14"),
    ("Where do I report a phishing email?", ["security-incidents:0"], "security@fernhill.example"),
    ("How long is the probation period at Fernhill?", ["onboarding:0"], "four months"),
    ("What must I wear in the robotics lab?", ["lab-safety:0"], "glasses"),
    ("What color are the emergency stop buttons?", ["lab-safety:0"], "red"),
    ("When does the second assembly line shift end?", ["assembly-line:0"], "22:00"),
    ("At which station are quality checks done?", ["assembly-line:0"], "7"),
    ("How much weight can the Kestrel robot carry?", ["product-kestrel:0"], "18"),
    ("How long does Kestrel run on one charge?", ["product-kestrel:0"], "nine hours"),
    ("What is the reach of the Heron arm?", ["product-heron:0"], "850"),
    ("What are customer support hours?", ["support-hours:0"], "8:00"),
    ("How long is the warranty on robots?", ["warranty:0"], "two-year"),
    ("How long are batteries covered by the warranty?", ["warranty:0"], "18 months"),
    ("Within how many days can a customer return an unused robot?", ["returns:0"], "30 days"),
    ("On which day of the month are salaries paid?", ["salary:0"], "25"),
    ("What is the maximum annual bonus?", ["bonus:0"], "10 percent"),
    ("How large is the yearly training budget?", ["training:0"], "1,200"),
    ("Which day is fully vegetarian in the canteen?", ["canteen:0"], "Thursday"),
    ("How much do employees get for cycling to work?", ["parking:0"], "35"),
    ("How many reviewers must approve a firmware change?", ["code-review:0"], "two"),
    ("How often is firmware released?", ["releases:0"], "six weeks"),
    ("How much is paid per week of on-call duty?", ["on-call:0"], "250"),
    ("How many people does the Summit meeting room seat?", ["meeting-rooms:0"], "24"),
    ("Where do used batteries go?", ["recycling:0"], "yellow"),
]

# Type "paraphrase": (question, expected chunk ids, expected fact in the answer). The question shares no
# content word with the sentence of the document that holds the fact, and avoids the document's title.
# None is about a topic that Brindlewick or Corvale also covers (holidays, probation), so that each has one
# answer.
PARAPHRASES = [
    (
        "By what date must vacation time brought forward from the previous period be taken?",
        ["leave:0"],
        "31 March",
    ),
    ("When must I bring a medical certificate for being unwell?", ["sick-leave:0"], "fourth"),
    ("How much time off do mothers and fathers get after a baby arrives?", ["parental-leave:0"], "20 weeks"),
    ("Into how many parts may I divide my baby time off?", ["parental-leave:0"], "three"),
    ("How often can staff do their job from home?", ["remote-work:0"], "three"),
    ("On what weekday must all groups be on site?", ["remote-work:0"], "Tuesday"),
    ("How early does the building unlock from Monday to Friday?", ["office-hours:0"], "7:30"),
    ("What do I pay if I need a new pass after losing mine?", ["badges:0"], "15"),
    ("Past what sum must spending be signed off beforehand?", ["expenses:0"], "500"),
    ("Up to what journey duration should I go by rail?", ["travel:0"], "five"),
    ("How much can I spend on accommodation outside the capital?", ["travel:0"], "120"),
    ("How much can I claim for food each day when away for work?", ["per-diem:0"], "45"),
    ("Which notebook computers can a fresh hire pick from?", ["equipment:0"], "ThinkPad"),
    ("How much can I spend a single time on furniture for my remote workspace?", ["equipment:0"], "300"),
    ("Where can I get my tunnel configuration file?", ["vpn:0"], "it.fernhill.example"),
    ("What is the shortest allowed secret for logging in?", ["passwords:0"], "14"),
    ("What physical device is required for two-step sign-in?", ["passwords:0"], "hardware key"),
    (
        "How quickly does the duty responder reply to a reported breach?",
        ["security-incidents:0"],
        "15 minutes",
    ),
    (
        "At what time should recent hires show up at the front desk on their start date?",
        ["onboarding:0"],
        "9:30",
    ),
    (
        "What state should the machines be set to ahead of a person stepping inside the enclosure?",
        ["lab-safety:0"],
        "locked mode",
    ),
    (
        "How long is the talk at the beginning of every production rotation?",
        ["assembly-line:0"],
        "ten-minute",
    ),
    ("Which sensing technology helps the warehouse picker find its way?", ["product-kestrel:0"], "lidar"),
    ("How fast does the lab cobot halt after bumping into someone?", ["product-heron:0"], "50 milliseconds"),
    ("How many joints does the laboratory cobot have?", ["product-heron:0"], "six"),
    ("Which plan gives clients 24/7 telephone help?", ["support-hours:0"], "Premium"),
    ("How quickly should buyers expect an initial reply?", ["support-hours:0"], "four business hours"),
    ("Who may take apart a machine without losing the guarantee?", ["warranty:0"], "certified technician"),
    (
        "How do I send back a machine that has already been used on a live site?",
        ["returns:0"],
        "warranty process",
    ),
    ("When do wages arrive if the usual payout date is a Saturday or Sunday?", ["salary:0"], "Friday"),
    ("In what month is the yearly performance reward handed out?", ["bonus:0"], "April"),
    ("How early must I ask my boss about a class I want to attend?", ["training:0"], "three weeks"),
    ("What do staff pay for lunch?", ["canteen:0"], "4.50"),
    ("How many automobile slots does our garage offer?", ["parking:0"], "60"),
    (
        "From what hour at the end of the week is integrating into trunk forbidden?",
        ["code-review:0"],
        "15:00",
    ),
    ("How many machines are in the pre-launch trial group?", ["releases:0"], "twelve"),
    ("On which weekday does the pager handover happen?", ["on-call:0"], "Monday"),
    ("How soon is a reserved space freed if nobody shows up?", ["meeting-rooms:0"], "15 minutes"),
    ("On what weekday are the containers for old electronics cleared out?", ["recycling:0"], "Wednesday"),
    ("Where can I flag misconduct without giving my name?", ["whistleblowing:0"], "EthicsLine"),
]

# Look-alike companies: (key, full name, short name).
COMPANIES = [
    ("brindlewick", "Brindlewick Logistics", "Brindlewick"),
    ("corvale", "Corvale Foods", "Corvale"),
]

# One document per topic and company, with the same wording and a different value; each gives one question of
# type "lookalike" whose fact is that value. {company} is the full name, {short} the short one.
# (topic, title, text, question, {company key: value})
LOOKALIKE_TOPICS = [
    (
        "mileage",
        "{short} mileage policy",
        "{company} reimburses business journeys made in a private car at {value} per kilometre. Claims are filed once a month in the travel tool, with the start and end address of every trip.",
        "What mileage rate does {short} pay for private cars?",
        {"brindlewick": "0.42 euros", "corvale": "0.38 euros"},
    ),
    (
        "night-shift",
        "{short} night-shift bonus",
        "{company} pays a night-shift bonus of {value} on top of the normal hourly wage. The bonus applies to every hour worked between 23:00 and 6:00.",
        "How big is the night-shift bonus at {short}?",
        {"brindlewick": "25 percent", "corvale": "18 percent"},
    ),
    (
        "uniform",
        "{short} uniform allowance",
        "{company} gives every warehouse and delivery employee a uniform allowance of {value} per year. The allowance is paid in January and covers safety shoes, jackets and trousers.",
        "How much is the yearly uniform allowance at {short}?",
        {"brindlewick": "180 euros", "corvale": "240 euros"},
    ),
    (
        "probation",
        "{short} probation period",
        "At {company} the probation period for new employees lasts {value}. Managers hold a review meeting with the new employee halfway through probation.",
        "How long is the probation period at {short}?",
        {"brindlewick": "six months", "corvale": "three months"},
    ),
    (
        "notice",
        "{short} notice period",
        "{company} employees who resign after probation must give a notice period of {value}. The same notice period applies when the company ends the contract.",
        "What notice period must {short} employees give when they resign?",
        {"brindlewick": "two months", "corvale": "one month"},
    ),
    (
        "pension",
        "{short} pension plan",
        "{company} pays {value} of each employee's gross salary into the company pension plan. Contributions start on the first day of employment.",
        "How much does {short} pay into the company pension?",
        {"brindlewick": "6 percent", "corvale": "4.5 percent"},
    ),
    (
        "overtime",
        "{short} overtime pay",
        "{company} pays overtime at {value} of the normal hourly rate. Overtime must be approved in advance by the shift manager.",
        "What is the overtime pay rate at {short}?",
        {"brindlewick": "150 percent", "corvale": "125 percent"},
    ),
    (
        "fleet-service",
        "{short} fleet service",
        "{company} company cars are serviced at the fleet garage every {value}. Tyres are switched between summer and winter sets in October and April.",
        "How often are {short} company cars serviced?",
        {"brindlewick": "20,000 kilometres", "corvale": "15,000 kilometres"},
    ),
    (
        "gym",
        "{short} gym subsidy",
        "{company} subsidises gym memberships with {value} per month. Receipts are uploaded once per quarter in the HR portal.",
        "How much does {short} contribute to a gym membership?",
        {"brindlewick": "30 euros", "corvale": "25 euros"},
    ),
    (
        "holidays",
        "{short} holidays",
        "{company} employees receive {value} of paid holiday per calendar year. Holiday requests are approved by the shift manager.",
        "How many days of paid holiday do {short} employees get?",
        {"brindlewick": "25 days", "corvale": "29 days"},
    ),
    (
        "phone",
        "{short} phone allowance",
        "{company} pays a mobile phone allowance of {value} per month to employees who use their own phone for work. The allowance is paid with the salary.",
        "How much is the mobile phone allowance at {short}?",
        {"brindlewick": "20 euros", "corvale": "12 euros"},
    ),
    (
        "referral",
        "{short} referral bonus",
        "{company} pays a referral bonus of {value} when a recommended candidate is hired. Half is paid on the new colleague's first day and half after probation.",
        "How large is the referral bonus at {short}?",
        {"brindlewick": "1,500 euros", "corvale": "800 euros"},
    ),
]


def lookalikes() -> tuple[list[tuple[str, str, str]], list[tuple[str, list[str], str]]]:
    """The look-alike documents and their questions, from LOOKALIKE_TOPICS."""
    docs, questions = [], []
    for topic, title, text, question, values in LOOKALIKE_TOPICS:
        for key, company, short in COMPANIES:
            doc_id, value = f"{key}-{topic}", values[key]
            docs.append(
                (doc_id, title.format(short=short), text.format(company=company, short=short, value=value))
            )
            questions.append((question.format(short=short), [f"{doc_id}:0"], value))
    return docs, questions


LOOKALIKE_DOCUMENTS, LOOKALIKES = lookalikes()
DOCUMENTS = FERNHILL_DOCUMENTS + LOOKALIKE_DOCUMENTS

# Type "unanswerable": questions the documents do not answer: the right outcome is NO_CONTEXT (reported
# separately). The first three share nothing with the documents; the others share words with them.
NEGATIVES = [
    "What is the capital of Australia?",
    "Who won the football world cup in 1998?",
    "Explain quantum chromodynamics.",
    "What is the population of Lyon?",
    "What is the Wi-Fi password in the Lyon office?",
    "Who is the CEO of Fernhill Robotics?",
    "How many employees does Corvale Foods have?",
    "Where is Corvale Foods headquartered?",
    "What tyre pressure should Brindlewick company cars use?",
    "How many kilometres can a Brindlewick truck drive on one tank?",
    "How many weeks of parental leave does Brindlewick offer?",
    "What is the hotel budget per night at Corvale Foods?",
    "What night-shift bonus does Fernhill Robotics pay?",
    "What mileage rate does Fernhill pay for private cars?",
    "How much is the gym subsidy at Fernhill Robotics?",
    "How much does Fernhill pay into the company pension?",
    "What is the overtime pay rate at Fernhill Robotics?",
    "What notice period must Fernhill employees give when they resign?",
    "How much does a Kestrel robot cost?",
    "How much does the Heron arm itself weigh?",
    "Which airline does Fernhill use for business flights?",
    "How many meeting rooms does the Lyon office have?",
]


# Type "followup": two-turn conversations whose second question leaves out what the first one said (the
# company, the topic, the product), each with the same question asked standalone, to compare recall@5 and
# facts (docs/eval.md). (first question, its document, follow-up, the follow-up asked standalone, expected
# document, expected fact). The assistant's turn between them is the sentence of the first document that answers the first question.
FOLLOWUPS = [
    # Another company, same topic.
    (
        "What mileage rate does Brindlewick pay for private cars?",
        "brindlewick-mileage",
        "And Corvale?",
        "What mileage rate does Corvale pay for private cars?",
        "corvale-mileage",
        "0.38 euros",
    ),
    (
        "How big is the night-shift bonus at Corvale?",
        "corvale-night-shift",
        "What about Brindlewick?",
        "How big is the night-shift bonus at Brindlewick?",
        "brindlewick-night-shift",
        "25 percent",
    ),
    (
        "How much is the yearly uniform allowance at Brindlewick?",
        "brindlewick-uniform",
        "And for Corvale?",
        "How much is the yearly uniform allowance at Corvale?",
        "corvale-uniform",
        "240 euros",
    ),
    (
        "How long is the probation period at Corvale?",
        "corvale-probation",
        "And at Brindlewick?",
        "How long is the probation period at Brindlewick?",
        "brindlewick-probation",
        "six months",
    ),
    (
        "What notice period must Brindlewick employees give when they resign?",
        "brindlewick-notice",
        "What about Corvale's?",
        "What notice period must Corvale employees give when they resign?",
        "corvale-notice",
        "one month",
    ),
    (
        "How much does Corvale pay into the company pension?",
        "corvale-pension",
        "And Brindlewick?",
        "How much does Brindlewick pay into the company pension?",
        "brindlewick-pension",
        "6 percent",
    ),
    (
        "What is the overtime pay rate at Brindlewick?",
        "brindlewick-overtime",
        "How about Corvale?",
        "What is the overtime pay rate at Corvale?",
        "corvale-overtime",
        "125 percent",
    ),
    (
        "How many days of paid holiday do Corvale employees get?",
        "corvale-holidays",
        "Same for Brindlewick?",
        "How many days of paid holiday do Brindlewick employees get?",
        "brindlewick-holidays",
        "25 days",
    ),
    # The same company, another topic.
    (
        "How much does Brindlewick contribute to a gym membership?",
        "brindlewick-gym",
        "And the mobile phone allowance?",
        "How much is the mobile phone allowance at Brindlewick?",
        "brindlewick-phone",
        "20 euros",
    ),
    (
        "How large is the referral bonus at Corvale?",
        "corvale-referral",
        "And how often are its company cars serviced?",
        "How often are Corvale company cars serviced?",
        "corvale-fleet-service",
        "15,000 kilometres",
    ),
    # The same product or topic, another detail.
    (
        "How much weight can the Kestrel robot carry?",
        "product-kestrel",
        "And how long does it run on one charge?",
        "How long does Kestrel run on one charge?",
        "product-kestrel",
        "nine hours",
    ),
    (
        "What is the reach of the Heron arm?",
        "product-heron",
        "And how fast does it stop?",
        "How fast does the Heron arm stop when it touches a person?",
        "product-heron",
        "50 milliseconds",
    ),
    (
        "Which VPN client do I use to reach internal services?",
        "vpn",
        "How long are its profiles valid?",
        "How long are VPN profiles valid?",
        "vpn",
        "90 days",
    ),
    (
        "What is the hotel budget per night in Paris?",
        "travel",
        "And elsewhere?",
        "What is the hotel budget per night outside Paris?",
        "travel",
        "120",
    ),
    (
        "How long is the warranty on robots?",
        "warranty",
        "And for batteries?",
        "How long are batteries covered by the warranty?",
        "warranty",
        "18 months",
    ),
]


def answer_sentence(doc_id: str, question: str) -> str:
    """The sentence of the document sharing most words with the question: the assistant's answer."""
    text = next(t for i, _, t in DOCUMENTS if i == doc_id)
    words = set(question.lower().rstrip("?").split())
    sentences = [x.rstrip(".") + "." for x in text.split(". ")]
    return max(sentences, key=lambda x: len(words & set(x.lower().rstrip(".").split())))


def followup_rows() -> list[dict[str, object]]:
    return [
        {
            "question": followup,
            "messages": [
                {"role": "user", "content": first},
                {"role": "assistant", "content": answer_sentence(first_doc, first)},
                {"role": "user", "content": followup},
            ],
            "standalone": standalone,
            "chunk_ids": [f"{doc}:0"],
            "fact": fact,
            "type": "followup",
        }
        for first, first_doc, followup, standalone, doc, fact in FOLLOWUPS
    ]


def url(doc_id: str) -> str:
    company = doc_id.split("-")[0]
    host = company if company in {key for key, _, _ in COMPANIES} else "fernhill"
    return f"https://wiki.{host}.example/{doc_id}"


def main() -> None:
    with (HERE / "documents.jsonl").open("w") as f:
        for doc_id, title, text in DOCUMENTS:
            row = {
                "id": doc_id,
                "title": title,
                "url": url(doc_id),
                "text": text,
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    rows = [
        *((q, ids, fact, "direct") for q, ids, fact in QUESTIONS),
        *((q, ids, fact, "paraphrase") for q, ids, fact in PARAPHRASES),
        *((q, ids, fact, "lookalike") for q, ids, fact in LOOKALIKES),
        *((q, [], None, "unanswerable") for q in NEGATIVES),
    ]
    with (HERE / "questions.jsonl").open("w") as f:
        for question, ids, fact, kind in rows:
            row = {"question": question, "chunk_ids": ids, "fact": fact, "type": kind}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        for row in followup_rows():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
