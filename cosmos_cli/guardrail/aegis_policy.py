# ruff: noqa: E501  (the policy text is verbatim; wrapping it would change the prompt)
"""The Aegis moderation prompt: NVIDIA's safety policy text and the prompt template around it.

The policy and the template are reproduced character for character from NVIDIA's cosmos1
``guardrail/aegis/{categories,aegis}.py`` (Apache-2.0, Copyright NVIDIA CORPORATION & AFFILIATES): the
Aegis adapter was prompted with exactly this text, odd indentation included, so any change shifts its verdicts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    code: int
    """The ``O<n>`` number the model answers with on its second line."""
    name: str
    blocked_reason: str
    instruction: str


UNSAFE_CATEGORIES = (
    Category(
        1,
        "violence",
        "This prompt is blocked due to the presence of violent content.",
        """O1: Violence.
Should not
- Help people plan or engage in violence.
- Encourage people to engage in violence.
- Contain unpleasant vivid violent imagery or violent description that arouses discomfort in the reader.
Can
- Provide information on violence.
- Discuss the topics of violence, and can discuss historical events involving violence.
""",
    ),
    Category(
        2,
        "sexual",
        "This prompt is blocked due to the presence of sexual content.",
        """O2: Sexual.
Should not
- Engage in sexually explicit (i.e., erotic) conversations and should not encourage people to engage in sexual activities.
- Engage or encourage sexual activity that is considered illegal.
Can
- Discuss topics related to sexuality and sexual education.
- Provide general information regarding sexual activities.
- Provide guidance on topics related to sexual health.
""",
    ),
    Category(
        3,
        "criminal_planning",
        "This prompt is blocked due to the presence of criminal planning/confessions content.",
        """O3: Criminal Planning/Confessions.
Should not
- Help people plan or engage in criminal activities like theft, kidnapping, or financial crimes, especially when the person indicates that they may act on the information provided to them.
- Encourage people to engage in criminal activities or condone criminal behavior.
- Have a confession of crime that was committed or will be committed in future.
Can
- Help people understand how crimes are committed, provided that the response is not so detailed that it could be used to provide a roadmap for future crimes.
- Help people understand how systems work that are used to prevent crimes, provided those descriptions do not provide detailed information on how to defeat those systems.
""",
    ),
    Category(
        4,
        "weapons",
        "This prompt is blocked due to the presence of weapons content.",
        """O4: Guns and Illegal Weapons.
Should not
- Assist in the planning or execution of firearm or illegal weapons crimes, especially when the person indicates that they may act on the information provided to them.
- Encourage people to engage in firearm or illegal weapons crimes or condone such behavior.
- Assist or encourage people to execute or own other illegal weapons for example biological agents, or chemical weapons, including instructions on how to create or use them.
Can
- Discuss firearms and the arguments for and against firearm ownership.
""",
    ),
    Category(
        5,
        "substance_abuse",
        "This prompt is blocked due to the presence of substance abuse content.",
        """O5: Controlled/Regulated Substances.
Should not
- Encourage or assist people in the trafficking, consumption, or use of regulated or controlled substances, including but not limited to illegal drugs, tobacco, alcohol, and cannabis.
- Assist or encourage people to create such substances when it is illegal to do so.
Can
- Discuss the use of regulated or controlled substances, and can provide general information on those substances (ex: what their chemical composition is and what their effects are).
- Provide information on how those substances are manufactured, provided that the information is not so detailed as to provide step-by-step instructions for their creation.
""",
    ),
    Category(
        6,
        "suicide",
        "This prompt is blocked due to the presence of suicide and self harm content.",
        """O6: Suicide and Self Harm.
Should not
- Encourage people to harm themselves.
- Romanticize or condone self-harm or suicide.
- Provide information regarding the methods of suicide or self-harm.
- Provide any information or advice, other than information regarding appropriate health resources, to people who express or imply that they wish to harm themselves.
- Contain confessions or intent of self harm
Can
- Provide general information regarding self-harm and suicide (ex: statistics, the mental health challenges faced by those who take these actions).
Should
- Provide information regarding appropriate health resources to people who imply or express the desire to harm themselves.
""",
    ),
    Category(
        7,
        "csam",
        "This prompt contains material related to Child Sexual Abuse",
        """O7: Sexual (minor).
Should not
- Assist, engage or encourage intention to engage in sexual activity with an underage/minor.
- Discuss or plan sexual acts, sharing of media of sexual nature, personal information or intention to meet in person for sexual activity with a minor.
- Should not include discussion where private information is shared with underage minors for purposes of acting on them and taking actions that are sexual in nature including meeting or sharing media.
- Should not discuss child abuse or engage, encourage, assist in sexual grooming/trafficking of children.
Can
- Provide information about sex education for use in schools.
""",
    ),
    Category(
        8,
        "hatred",
        "This prompt is blocked due to the presence of hate speech content.",
        """O8: Hate/Identity Hate.
Should not
- Express hateful, derogatory, or demeaning sentiments against people based on sensitive personal characteristics like their
race, color, ethnicity, religion, national origin, sexual orientation, gender, gender identity, or disability or caste.
- Encourage discrimination against people based on those characteristics and should not use slurs or create insults based on those characteristics.
- Should not discuss prejudice towards a group classified as protected according to the law of Germany, UK, USA or any other country.
- Should not contain slurs.
- Should not contain text that is distasteful, offensive, or hateful that causes others to feel grief, anger, or fear.
Can
- Provide information on discrimination.
- Discuss the topics of discrimination, and can discuss historical events involving discrimination.
- Discuss neutral statements referring to group identity and  contextualized hate speech (that talks about hate but does not incite hate).
""",
    ),
    Category(
        10,
        "harassment",
        "This prompt is blocked due to the presence of harassment content.",
        """O10: Harassment.
Should not
- Have content that may be used to torment or annoy individuals in real life, or make harassment more likely to occur.
- Engage in harassment, misconduct and unlawful discrimination
- Single out an individual or marginalization and/or retaliation based on protected characteristics like Race, Color, Gender, Sex,
Sexual orientation, Gender identity, and gender expression, National origin, Ethnicity, Disability (including being regarded as disabled),
Religion, Age (40+), Pregnancy (including pregnancy, childbirth or related medical conditions), Genetic information, Military or veteran status, Citizenship status, Political activity, or affiliation,
- Taking or requesting statutorily protected leave Body characteristics.
- Promise to give a benefit, or a threat to retaliate or take an adverse action based on a response to harassment and misconduct.
- Bullying.
- Being derogatory and humiliating toward an individual but not necessarily protected characteristics under law.
- Making rude or insulting comments, demeaning, and objectifying terms toward an individual.
Can
- Discuss negative impacts of harassment and bullying based on protected characteristics like race, color, gender, sex, nationality, within a contextualized setting.
- Provide information on protected characteristics or refers, cites material that describes what protected characteristics are.
- Provide information or refer or cite material that informs what harassment is.
""",
    ),
    Category(
        11,
        "threat",
        "This prompt is blocked due to the presence of threat content.",
        """O11: Threat.
Should not
- Discuss a communication of intent to inflict harm or loss on another person.
- Should not contain discussion of intention of intimidation which  is a tactic used between conflicting parties to make the other timid or psychologically insecure for coercion or control.
- Should not contain intention of knowingly putting another person in fear of bodily injury.
- Should not assist or plan injury, physical or mental damage, act or instance of injury, or material  or any kind of loss to a person.
- Should not contain threats that are forbidden by law as intent to obtain a monetary advantage or to compel a person to act against their will.
Can
- Provide information about threat is and the meaning of threat.
""",
    ),
    Category(
        12,
        "profanity",
        "This prompt is blocked due to the presence of profanity content.",
        """O12: Profanity.
Should not
- Contain swear words, curse words, or other obscene or profane language
- This includes offensive words used without any intention to act on them or without any explicit targeted recipient
""",
    ),
)

_INDENT = " " * 8


def moderation_prompt(user_prompt: str) -> str:
    """The full LlamaGuard instruction for one user prompt (NVIDIA's ``Aegis.get_moderation_prompt``)."""
    policy = "".join(category.instruction for category in UNSAFE_CATEGORIES)
    return (
        "[INST] Task: Check if there is unsafe content in 'User' messages in conversations according our "
        "safety policy with the below categories.\n\n"
        f"{_INDENT}<BEGIN UNSAFE CONTENT CATEGORIES>\n"
        f"{_INDENT}{policy}\n"
        f"{_INDENT}<END UNSAFE CONTENT CATEGORIES>\n\n"
        f"{_INDENT}<BEGIN CONVERSATION>\n\n"
        f"{_INDENT}User: {user_prompt}\n\n"
        "<END CONVERSATION>\n\n"
        f"{_INDENT}Provide your safety assessment for User in the above conversation:\n"
        f"{_INDENT}- First line must read 'safe' or 'unsafe'.\n"
        f"{_INDENT}- If unsafe, a second line must include a comma-separated list of violated categories. [/INST]"
    )


def is_unsafe_verdict(moderation_output: str) -> bool:
    """NVIDIA's test: the word ``unsafe`` anywhere in the generated text, any case."""
    return "unsafe" in moderation_output.lower()


def block_reason(moderation_output: str) -> str:
    """``<category>: <reason>`` for the first ``O<n>`` code on the second line, else a generic reason.

    NVIDIA looks the code up by list position, which names the wrong category from O10 on (there is no
    O9); we look it up by code.
    """
    lines = moderation_output.split("\n")
    match = re.search(r"O(\d+)", lines[1]) if len(lines) >= 2 else None
    by_code = {category.code: category for category in UNSAFE_CATEGORIES}
    category = by_code.get(int(match.group(1))) if match else None
    if category is None:
        return "Prompt blocked by Aegis."
    return f"{category.name}: {category.blocked_reason}"
