
ø¾¥Ø‚²ê’2ã

	countdown*	
jorch2


encoding
json/plain2J
r$a235cf67-7217-4d34-9c8e-0a70a0db2f5fz607@vm‚$a235cf67-7217-4d34-9c8e-0a70a0db2f5f²À
I
jorch.script9

encoding
json/plain"tests/histories/countdown.lua"
s
jorch.script_sha256\

encoding
json/plainB"c3b547b86e7444f4907215d6637a86835d31da194aae6274a0604b21c42d8281"â	countdown
%¾¥Ø´“R
	
jorch

¾¥Øõ§ı”Z	jorch
¾¥Øæ›İ•bjorch
¾¥ØŠ†é•¢	
1
¿¥ØØ©ª–ª
1
%¿¥ØŠ´Â–R
	
jorch

¿¥ØÏ­—Z	jorch
	¿¥ØºÕ±—bjorch
v
¿¥Ø¹€Â—Ša
$39dc634a-4d71-4761-85bb-824afbe99284
	countdown	
jorch"


encoding
json/plain18	H