#!/usr/bin/env python3
"""A small noisy US-style trap set for tessera-matching (not FEBRL).

usage: gen_trap_set.py SEED RECORDS.csv TRUTH.csv

About 2,400 people and 4,300 records in the canonical CSV format: 1,500 ordinary
people plus 100 twin pairs (same family name, birth date, address and phone;
different given names; SSNs differing in the last digit), 80 junior/senior pairs
(same names, address and phone; a generation apart; suffix on some), 150
households sharing address, phone and email, 60 extra common names (James/John/
Mary/Michael Smith) and 40 placeholder records (JOHN DOE, BABY GIRL, 1900-01-01,
999-99-9999, 555-555-5555), each a different person. Each person has 1-3 records;
later records get 1-3 noises: nickname, given/family typo, day/month swap, move
(new address, sometimes new phone), maiden name (new family name, female), missing
SSN/phone/email, upper case, street abbreviations, given/family swapped, birth
year off by one. Score with shared/tools/score_links.py.
"""
import random, csv, sys
random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
F = "mary patricia jennifer linda elizabeth barbara susan jessica sarah karen lisa nancy betty margaret sandra ashley emily donna michelle carol amanda melissa deborah stephanie rebecca sharon laura cynthia kathleen amy angela anna brenda emma olivia sophia isabella mia abigail ella grace chloe lily".split()
M = "james robert john michael david william richard joseph thomas charles christopher daniel matthew anthony mark donald steven paul andrew joshua kenneth kevin brian george timothy ronald edward jason jeffrey ryan jacob gary nicholas eric jonathan stephen larry justin scott brandon benjamin samuel noah liam".split()
NICK = {"william":"bill","robert":"bob","richard":"dick","james":"jim","john":"jack","michael":"mike","elizabeth":"liz","margaret":"peggy","patricia":"pat","jennifer":"jenny","thomas":"tom","charles":"chuck","christopher":"chris","daniel":"dan","matthew":"matt","anthony":"tony","joseph":"joe","katherine":"kate","deborah":"debbie","rebecca":"becky","susan":"sue","edward":"ed","steven":"steve","nicholas":"nick","samuel":"sam","benjamin":"ben","jonathan":"jon","kenneth":"ken","timothy":"tim","andrew":"andy"}
L = "smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson white harris sanchez clark ramirez lewis robinson walker young allen king wright scott torres nguyen hill flores green adams nelson baker hall rivera campbell mitchell carter roberts kowalski oconnor mcdonald".split()
ST = "main oak pine maple cedar elm washington lake hill park view sunset river church spring north ridge".split()
SUF = [("street","st"),("avenue","ave"),("road","rd"),("drive","dr"),("lane","ln"),("court","ct"),("boulevard","blvd")]
CITIES = [("springfield","IL","627"),("portland","OR","972"),("austin","TX","787"),("columbus","OH","432"),("denver","CO","802")]
def typo(s):
    if len(s) < 3: return s
    i = random.randrange(len(s)-1); op = random.randrange(3)
    if op == 0: return s[:i]+s[i+1]+s[i]+s[i+2:]
    if op == 1: return s[:i]+s[i+1:]
    return s[:i]+random.choice("aeiourstln")+s[i+1:]
def addr():
    c = random.choice(CITIES); sfx = random.choice(SUF)
    return dict(line=f"{random.randint(1,9999)} {random.choice(ST)} {sfx[0]}" + (f" apartment {random.randint(1,40)}" if random.random()<0.2 else ""), city=c[0], state=c[1], zip=c[2]+f"{random.randint(0,99):02d}")
def phone(): return f"({random.randint(201,989)}) {random.randint(200,999)}-{random.randint(0,9999):04d}"
def ssn(): return f"{random.randint(100,899)}-{random.randint(10,99)}-{random.randint(1000,9999)}"
def dob(lo=1930, hi=2015): return (random.randint(lo,hi), random.randint(1,12), random.randint(1,28))
people = []
pid = 0
def person(**kw):
    global pid
    pid += 1
    sex = kw.get("sex") or random.choice("MF")
    p = dict(pid=pid, sex=sex, given=kw.get("given") or random.choice(F if sex=="F" else M), family=kw.get("family") or random.choice(L),
             dob=kw.get("dob") or dob(), addr=kw.get("addr") or addr(), phone=kw.get("phone") or phone(), ssn=kw.get("ssn", ssn()),
             email=kw.get("email"), suffix=kw.get("suffix",""))
    if p["email"] is None: p["email"] = f"{p['given']}.{p['family']}{random.randint(1,99)}@{random.choice(['gmail.com','yahoo.com','mail.com'])}" if random.random()<0.5 else ""
    people.append(p); return p
for _ in range(1500): person()
for _ in range(100):  # twins
    a = person(); b = person(family=a["family"], dob=a["dob"], addr=a["addr"], phone=a["phone"], email="", ssn=a["ssn"][:-1]+str((int(a["ssn"][-1])+1)%10))
for _ in range(80):  # jr/sr
    a = person(sex="M", suffix="sr"); y = (a["dob"][0]+random.randint(20,35), random.randint(1,12), random.randint(1,28))
    b = person(sex="M", given=a["given"], family=a["family"], dob=y, addr=a["addr"], phone=a["phone"], email="", suffix="jr" if random.random()<0.5 else "")
    if random.random()<0.5: a["suffix"] = ""
for _ in range(150):  # households
    a = person(); em = a["email"] or f"{a['family']}family@gmail.com"; a["email"]=em
    for k in range(random.randint(1,3)):
        person(family=a["family"], addr=a["addr"], phone=a["phone"], email=em)
for _ in range(60):  # common names, different people
    g = random.choice(["james","john","mary","michael"]); person(given=g, family="smith", sex="F" if g=="mary" else "M")
rows = []
def emit(p, src, lid, noise):
    g, f, (y,m,d), a, ph, s, em = p["given"], p["family"], p["dob"], dict(p["addr"]), p["phone"], p["ssn"], p["email"]
    sex = p["sex"]
    if noise:
        for kind in random.sample(["nick","typo_g","typo_f","swapdm","move","maiden","no_ssn","no_phone","case","abbr","swapname","no_email","dobtypo"], random.randint(1,3)):
            if kind=="nick" and g in NICK: g = NICK[g]
            elif kind=="typo_g": g = typo(g)
            elif kind=="typo_f": f = typo(f)
            elif kind=="swapdm" and d<=12: m, d = d, m
            elif kind=="move": a = addr(); ph = phone() if random.random()<0.5 else ph
            elif kind=="maiden" and sex=="F": f = random.choice(L)
            elif kind=="no_ssn": s = ""
            elif kind=="no_phone": ph = ""
            elif kind=="case": g, f = g.upper(), f.upper()
            elif kind=="abbr":
                for lo, sh in SUF: a["line"] = a["line"].replace(lo, sh)
            elif kind=="swapname": g, f = f, g
            elif kind=="no_email": em = ""
            elif kind=="dobtypo": y = y + random.choice([-1,1])
    fam = f + (" " + p["suffix"] if p["suffix"] else "")
    rows.append([src, lid, g, fam, f"{y:04d}-{m:02d}-{d:02d}", sex, a["line"], a["city"], a["state"], a["zip"], ph, em, s, p["pid"]])
lid = 0
for p in people:
    n = random.choice([1,1,2,2,3])
    for k in range(n):
        lid += 1; emit(p, random.choice(["ehr","crm","billing"]), f"r{lid}", k>0)
# placeholders: distinct unknown people
for k in range(40):
    lid += 1; pid += 1
    rows.append(["ehr", f"r{lid}", random.choice(["john","jane","baby girl","baby boy"]), random.choice(["doe","doe","unknown", random.choice(L)]), "1900-01-01", random.choice("MF"), "", "", "", "", "555-555-5555", "", "999-99-9999", pid])
random.shuffle(rows)
with open(sys.argv[2], "w", newline="") as fh:
    w = csv.writer(fh); w.writerow("source,local_id,given_name,family_name,birth_date,sex,address_line,city,state,postal_code,phone,email,ssn".split(","))
    for r in rows: w.writerow(r[:13])
with open(sys.argv[3], "w", newline="") as fh:
    w = csv.writer(fh); w.writerow(["source","local_id","person_id"])
    for r in rows: w.writerow([r[0], r[1], r[13]])
print(len(rows), "rows", pid, "people")
