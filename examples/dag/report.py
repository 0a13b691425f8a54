def report(lengths, initials, title: str = "report"):
    avg = sum(lengths) / len(lengths) if lengths else 0
    return {"title": title, "average_length": round(avg, 2), "initials": initials}
